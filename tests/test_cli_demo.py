"""The command line and the demo on the bundled checkpoint."""

from __future__ import annotations

from typer.testing import CliRunner

from workbench.cli import app
from workbench.cli.demo import run_demo
from workbench.paths import DEFAULT_CHECKPOINT


def test_bundled_checkpoint_recalls_and_the_demo_reports_exact_effective_attention():
    lines: list[str] = []
    summary = run_demo(DEFAULT_CHECKPOINT, out=lines.append)
    assert summary["accuracy"] >= 0.9, summary  # the shipped model actually solves its task
    assert summary["effective_attention_error"] < 1e-5
    text = "\n".join(lines)
    assert "blocks.0.attn.hook_delta" in text and "write fidelity" in text


def test_cli_info_help_and_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["info", str(DEFAULT_CHECKPOINT)])
    assert res.exit_code == 0 and "delta" in res.output and "parameters" in res.output
    res = runner.invoke(app, ["info", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["train-recipe", "nope", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "unknown recipe" in res.output
    for cmd in ([], ["demo", "--help"], ["train-recipe", "--help"]):
        res = runner.invoke(app, cmd + (["--help"] if not cmd else []))
        assert res.exit_code == 0 and "Usage" in res.output
