"""The ``workbench`` command line: ``workbench --help``."""

from __future__ import annotations

from pathlib import Path

import typer

from .paths import DEFAULT_CHECKPOINT

app = typer.Typer(help="Fast-weight interpretability workbench.", no_args_is_help=True, add_completion=False)


@app.command()
def info(checkpoint: Path = typer.Argument(DEFAULT_CHECKPOINT, help="checkpoint directory")) -> None:
    """Print a checkpoint's config and parameter count."""
    from .checkpoint import CheckpointError, load

    try:
        model = load(checkpoint)
    except CheckpointError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2)
    typer.echo(summary(model))


@app.command()
def demo(checkpoint: Path = typer.Argument(DEFAULT_CHECKPOINT, help="checkpoint directory")) -> None:
    """Load a checkpoint, run it with every hook cached on one of its task's sequences, print what it exposes."""
    from .checkpoint import CheckpointError
    from .demo import run_demo

    try:
        run_demo(checkpoint)
    except CheckpointError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2)


@app.command("train-recipe")
def train_recipe(name: str = typer.Argument(..., help="recipe name, e.g. toy-delta"),
                 out: Path = typer.Option(..., help="directory to write the checkpoint to")) -> None:
    """Train one of the named recipes (workbench/recipes.py) and save the checkpoint."""
    from .recipes import RECIPES, run_recipe

    if name not in RECIPES:
        typer.echo(f"error: unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}", err=True)
        raise typer.Exit(code=2)
    summary = run_recipe(name, out)
    typer.echo(f"final eval loss {summary['final']['eval_loss']:.4f}, accuracy {summary['final']['eval_acc']:.3f}")


@app.command("app")
def app_command(port: int = typer.Option(8501, help="port to serve the app on"),
                address: str = typer.Option("", help="address to bind (default: streamlit's, all interfaces)"),
                headless: bool = typer.Option(False, "--headless", help="do not open a browser window")) -> None:
    """Open the browser app (streamlit run app.py) on the bundled checkpoint."""
    import subprocess

    from .app_support.launch import find_app_script, streamlit_argv

    try:
        script = find_app_script()
        argv = streamlit_argv(script, port=port, address=address or None, headless=headless)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2)
    typer.echo(f"serving the workbench app on http://localhost:{port} (Ctrl-C stops it)")
    try:
        code = subprocess.call(argv, cwd=script.parent)  # reads .streamlit/config.toml
    except KeyboardInterrupt:
        code = 0
    raise typer.Exit(code=code)


def summary(model) -> str:
    cfg = model.cfg
    lines = [f"HookedFastWeightLM: {cfg.n_layers} x {cfg.mixer} block(s), d_model {cfg.d_model}, "
             f"{cfg.n_heads} heads x d_head {cfg.d_head}, vocab {cfg.d_vocab}, {model.num_params():,} parameters"]
    lines.append("config: " + ", ".join(f"{k}={v}" for k, v in cfg.to_dict().items()))
    return "\n".join(lines)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
