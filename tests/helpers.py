"""Small shared test utilities."""

from __future__ import annotations

import torch


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| / max |b| (b the reference), in float64."""
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def fla_naive(op: str):
    """fla's pure-torch reference module ``fla/ops/<op>/naive.py``, loaded by file path.

    ``import fla.ops...`` pulls in triton (GPU only); the naive files need only torch and einops.
    Skips the calling test when flash-linear-attention is not installed.
    """
    import importlib.util

    import pytest

    spec = importlib.util.find_spec("fla")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("flash-linear-attention is not installed (pip install -e '.[dev]')")
    from pathlib import Path

    path = Path(list(spec.submodule_search_locations)[0]) / "ops" / op / "naive.py"
    if not path.exists():
        pytest.skip(f"this fla version has no {path}")
    mod_spec = importlib.util.spec_from_file_location(f"fla_naive_{op}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def full_run_in_readme(study_dir, study_cls, full, tables) -> dict:
    """A case study's committed full run: its results.json is of the full study ``full``, and the README
    holds its tables (``tables(results)``), its command and its wall time. Returns the results."""
    import json

    results = json.loads((study_dir / "results" / "results.json").read_text())
    readme = (study_dir / "README.md").read_text()
    assert results["quick"] is False and study_cls.from_dict(results["study"]) == full
    assert tables(results) in readme
    assert results["command"] in readme
    assert f"{results['wall_seconds'] / 60:.1f} min" in readme
    return results
