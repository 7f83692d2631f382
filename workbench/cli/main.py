"""The ``workbench`` command line: ``workbench --help``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..paths import DEFAULT_CHECKPOINT
from ..recipe_names import RECIPE_NAMES
from .studies import available_case_studies

app = typer.Typer(help="Fast-weight interpretability workbench.", no_args_is_help=True, add_completion=False)


@app.command()
def info(checkpoint: Path = typer.Argument(DEFAULT_CHECKPOINT, help="checkpoint directory")) -> None:
    """Print a checkpoint's summary: config, parameter count, hooks, and its task and final metrics (recipe.json)."""
    from ..checkpoint import CheckpointError
    from .describe import describe_checkpoint

    try:
        text = describe_checkpoint(checkpoint)
    except CheckpointError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2)
    typer.echo(text)


@app.command()
def demo(checkpoint: Path = typer.Argument(DEFAULT_CHECKPOINT, help="checkpoint directory")) -> None:
    """Load a checkpoint, run it with every hook cached on one of its task's sequences, print what it exposes."""
    from ..checkpoint import CheckpointError
    from .demo import run_demo

    try:
        run_demo(checkpoint)
    except CheckpointError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2)


@app.command("train-recipe")
def train_recipe(name: str = typer.Argument(..., help="recipe name: " + ", ".join(RECIPE_NAMES)),
                 out: Path = typer.Option(..., help="directory to write the checkpoint to")) -> None:
    """Train one of the named recipes (workbench/training/recipes.py) and write its run directory to --out."""
    from ..run_dir import RunDirError
    from ..training.recipes import RECIPES, run_recipe

    if name not in RECIPES:
        typer.echo(f"error: unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}", err=True)
        raise typer.Exit(code=2)
    try:
        summary = run_recipe(name, out)
    except RunDirError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2)
    typer.echo(f"final eval loss {summary['final']['eval_loss']:.4f}, accuracy {summary['final']['eval_acc']:.3f}")


@app.command("train")
def train_command(config: Path = typer.Argument(..., help='JSON file {"model": {ModelConfig}, "task": {"name": "mqar", '
                                                '...}, "train": {TrainConfig}}; a recipe.json works too'),
                  out: Path = typer.Option(..., help="directory to write the checkpoint, recipe.json and history.json to"),
                  progress: bool = typer.Option(True, help="show a progress bar")) -> None:
    """Train a model from a JSON run config and save the checkpoint to --out. A run that is killed or fails keeps
    its training state in .<out>.partial beside --out; the same command run again continues from it."""
    from ..run_dir import RunDirError
    from ..training.run_config import RunConfigError, load_run_config, train_run

    try:
        run = load_run_config(config)
        summary = train_run(run, out, command=f"workbench train {config} --out {out}", progress=progress)
    except (RunConfigError, RunDirError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2)
    final = summary["final"]
    typer.echo(f"wrote {out}: final eval loss {final['eval_loss']:.4f}, accuracy {final['eval_acc']:.3f} "
               f"after {final['step']} steps")


@app.command("case-study", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def case_study(ctx: typer.Context,
               name: str = typer.Argument(..., help="case study to run, one of: "
                                          + (", ".join(available_case_studies()) or "none found")),
               quick: bool = typer.Option(False, "--quick", help="the seconds-long version (what the tests run)"),
               out: Optional[Path] = typer.Option(None, help="output directory (default: the case study's own)")) -> None:
    """Reproduce a case study: runs python -m case_studies.NAME [--quick] [--out DIR]; further arguments are passed on
    (its own help: workbench case-study NAME -- --help)."""
    from .studies import run_case_study

    try:
        code = run_case_study(name, quick=quick, out=out, extra=ctx.args)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2)
    raise typer.Exit(code=code)


@app.command("app")
def app_command(port: int = typer.Option(8501, help="port to serve the app on"),
                address: str = typer.Option(
                    "127.0.0.1", help="address to bind: 127.0.0.1 serves this machine only; --address 0.0.0.0 "
                                      "serves every network interface (the app has no login: prefer an SSH tunnel)"),
                headless: bool = typer.Option(False, "--headless", help="do not open a browser window")) -> None:
    """Open the browser app (streamlit run on the installed workbench/streamlit_app/main.py) on the bundled checkpoint."""
    import os
    import sys

    from ..app_support.launch import exposure_warning, find_app_script, streamlit_argv

    try:
        script = find_app_script()
        argv = streamlit_argv(script, port=port, address=address or None, headless=headless)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2)
    warning = exposure_warning(address)
    if warning:
        typer.echo(warning, err=True)
    where = ("to this machine only (--address 0.0.0.0 serves the network)" if warning is None
             else f"on {address}, to every client that can reach it")
    typer.echo(f"serving the workbench app on http://localhost:{port} {where} (Ctrl-C stops it)")
    sys.stdout.flush()
    os.execv(argv[0], argv)  # become the server: signals (Ctrl-C, kill) reach streamlit itself


def main() -> None:
    app()


if __name__ == "__main__":
    main()
