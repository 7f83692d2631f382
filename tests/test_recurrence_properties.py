"""Property-based tests of every fast-weight recurrence through the mixer interface (hypothesis, ``ci`` profile).

The kernel-level property tests (tests/test_kernel_properties.py) check the chunked kernels against float64
loops. The memories whose recurrence is a loop of its own (Recurrent Delta Net, Delta RNN, Delta LSTM, FWM,
SRWM) have one backend, so here every registered fast-weight mixer's recurrence is held to what any recurrence
must satisfy, on its real inputs (read from a small random model's hooks):

  - continuing: a run split at a drawn position and continued from the first part's final state (and, for a
    memory that feeds back its output, its last output) equals the run in one piece;
  - chunking: the chunk size changes nothing but where the chunk-start states are taken, and each chunk-start
    state is the final state of the run on the prefix before it;
  - batch rows are independent, and non-contiguous inputs give the same result.
"""

from __future__ import annotations

from functools import lru_cache

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig
from workbench.mixers.registry import mixer_config, names
from workbench.mixers.state import feeds_back_output

KINDS = names(fast_weights=True)
VARIANTS = [(k, None) for k in KINDS] + [(k, dict(conv_size=3, output_norm=True))
                                         for k in ("rec_delta", "delta_rnn", "delta_lstm", "fwm", "srwm")]
N_POS = 24
TOL = 2e-5  # states are float32 in every recurrence


@lru_cache(maxsize=None)
def _inputs(kind: str, extras: "tuple | None"):
    """The recurrence of layer 0 of a small random model with mixer ``kind`` and its inputs on 3 random sequences."""
    mixer = mixer_config({"kind": kind, **dict(extras or ())})
    model = HookedFastWeightLM(ModelConfig(d_vocab=29, d_model=24, n_layers=1, n_heads=2, d_head=6, d_mlp=16,
                                           n_ctx=N_POS, mixer=mixer, init_std=0.4, seed=3))
    tokens = torch.randint(0, 29, (3, N_POS), generator=torch.Generator().manual_seed(5))
    return model.blocks[0].attn.recurrence, model.recurrence_inputs(tokens, 0)


def _run(recurrence, inputs, **kw):
    kw.setdefault("chunk_size", 4)
    return recurrence.run(inputs, backend="reference", **kw)


def _variant(index: int):
    kind, extras = VARIANTS[index]
    return _inputs(kind, None if extras is None else tuple(sorted(extras.items())))


variants = st.integers(0, len(VARIANTS) - 1)


def test_every_fast_weight_mixer_is_drawn():
    assert {k for k, _ in VARIANTS} == set(KINDS) and len(KINDS) >= 9


@given(variants, st.integers(1, N_POS - 1), st.sampled_from([1, 3, 4, 16]))
def test_a_split_run_continued_from_its_final_state_equals_one_run(index, split, chunk):
    recurrence, inputs = _variant(index)
    whole = _run(recurrence, inputs, chunk_size=chunk, output_final_state=True)
    first = _run(recurrence, inputs.at(slice(0, split)), chunk_size=chunk, output_final_state=True)
    carry = {"previous_output": first.output[:, -1]} if feeds_back_output(recurrence) else {}
    rest = _run(recurrence, inputs.at(slice(split, N_POS)), chunk_size=chunk, initial_state=first.final_state,
                output_final_state=True, **carry)
    assert rel_err(torch.cat([first.output, rest.output], 1), whole.output) < TOL
    assert rel_err(rest.final_state, whole.final_state) < TOL


@given(variants, st.sampled_from([1, 2, 5, 7, 24, 64]))
def test_the_chunk_size_moves_only_the_chunk_start_states(index, chunk):
    recurrence, inputs = _variant(index)
    one = _run(recurrence, inputs, chunk_size=1, output_chunk_states=True, output_final_state=True)
    res = _run(recurrence, inputs, chunk_size=chunk, output_chunk_states=True, output_final_state=True)
    assert rel_err(res.output, one.output) < TOL and rel_err(res.final_state, one.final_state) < TOL
    assert res.chunk_states.shape[1] == -(-N_POS // chunk)
    # chunk c starts from the state after position c·chunk − 1, which the chunk-size-1 run holds at index c·chunk
    assert rel_err(res.chunk_states, one.chunk_states[:, ::chunk]) < TOL


@given(variants, st.integers(0, 2), st.booleans())
def test_rows_are_independent_and_layout_does_not_matter(index, row, transposed):
    recurrence, inputs = _variant(index)
    full = _run(recurrence, inputs).output
    fields = {n: None if t is None else t[row:row + 1] for n, t in inputs.fields.items()}
    if transposed:  # the same values through buffers with the position axis last in memory
        fields = {n: t if t is None or t.dim() < 3 else t.transpose(1, -1).contiguous().transpose(1, -1)
                  for n, t in fields.items()}
    alone = _run(recurrence, type(inputs)(fields)).output
    assert rel_err(alone, full[row:row + 1]) < TOL


@pytest.mark.parametrize("kind", KINDS)
def test_runs_are_finite_and_deterministic(kind):
    recurrence, inputs = _inputs(kind, None)
    a, b = _run(recurrence, inputs).output, _run(recurrence, inputs).output
    assert torch.isfinite(a).all() and torch.equal(a, b)
