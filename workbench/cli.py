"""The ``workbench`` command line: ``workbench --help``."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Fast-weight interpretability workbench.", no_args_is_help=True, add_completion=False)

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "toy-delta"


@app.command()
def info(checkpoint: Path = typer.Argument(DEFAULT_CHECKPOINT, help="checkpoint directory")) -> None:
    """Print a checkpoint's config, parameter count and hooks."""
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
    from .demo import run_demo

    run_demo(checkpoint)


def summary(model) -> str:
    cfg = model.cfg
    lines = [f"HookedFastWeightLM: {cfg.n_layers} x {cfg.mixer} block(s), d_model {cfg.d_model}, "
             f"{cfg.n_heads} heads x d_head {cfg.d_head}, vocab {cfg.d_vocab}, {model.num_params():,} parameters"]
    lines.append("config: " + ", ".join(f"{k}={v}" for k, v in cfg.to_dict().items()))
    return "\n".join(lines)


def main() -> None:  # pragma: no cover - console entry
    app()
