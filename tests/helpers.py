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


def assert_restart_is_exact(kernel, per_position, weights, split: int, min_change_without_output: float) -> None:
    """A recurrence that feeds its output back (the Recurrent Delta Net, the Delta RNN, the Delta LSTM) restarts
    exactly at ``split`` from its state and its previous output, and not from the state alone.
    ``per_position``: the inputs with a ``pos`` axis (sliced); ``weights``: the rest (passed whole)."""
    whole = kernel(*per_position, *weights, output_final_state=True)
    head = kernel(*(a[:, :split] for a in per_position), *weights, output_final_state=True)
    tail_inputs = [a[:, split:] for a in per_position]
    tail = kernel(*tail_inputs, *weights, initial_state=head.final_state, previous_output=head.output[:, -1],
                  output_final_state=True)
    assert torch.equal(torch.cat([head.output, tail.output], 1), whole.output)
    assert torch.equal(tail.final_state, whole.final_state)
    # without the previous output the restart is wrong: the state alone is not the recurrence's whole state
    no_output = kernel(*tail_inputs, *weights, initial_state=head.final_state)
    assert rel_err(no_output.output, whole.output[:, split:]) > min_change_without_output


def gradcheck_with_state_and_output(kernel, args, state_shape, output_shape) -> bool:
    """``torch.autograd.gradcheck`` of ``kernel``'s output, final state and delta record in float64, through
    every input, a random initial state and a random previous output."""
    gen = torch.Generator().manual_seed(2)
    s0 = torch.randn(*state_shape, generator=gen, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(*output_shape, generator=gen, dtype=torch.float64, requires_grad=True)
    n = len(args)

    def fn(*xs):
        res = kernel(*xs[:n], initial_state=xs[n], previous_output=xs[n + 1], output_final_state=True,
                     output_delta=True)
        return res.output, res.final_state, res.delta

    return torch.autograd.gradcheck(fn, (*[a.clone().requires_grad_() for a in args], s0, y0))
