"""Head scores on constructed attention matrices with known answers."""

from __future__ import annotations

import pytest
import torch

from workbench.analysis import induction_score, previous_token_score, retrieval_score


def shifted(t: int, offset: int) -> torch.Tensor:
    """A[t, t − offset] = 1 where it exists, else attend to self."""
    A = torch.zeros(t, t)
    for i in range(t):
        A[i, i - offset if i - offset >= 0 else i] = 1.0
    return A


def test_previous_token_head_scores_one_and_signs_do_not_matter():
    A = torch.stack([-shifted(10, 1), torch.eye(10)])[None]  # head 0: signed previous-token; head 1: self
    s = previous_token_score(A)
    assert torch.allclose(s, torch.tensor([[1.0, 0.0]]))  # over queries t ≥ 1


def test_induction_head_on_a_repeated_sequence():
    seq = torch.tensor([5, 3, 8, 1, 9])
    tokens = torch.cat([seq, seq])[None]  # positions 5..9 repeat 0..4
    induct = shifted(10, 4)  # query t attends to t − 4 = the token after the previous occurrence
    prev = shifted(10, 1)
    s = induction_score(torch.stack([induct, prev])[None], tokens)
    assert torch.allclose(s, torch.tensor([[1.0, 0.0]]))


def test_induction_score_is_zero_without_repeats():
    tokens = torch.arange(6)[None]
    assert induction_score(torch.rand(1, 2, 6, 6).tril(), tokens).eq(0).all()


def test_retrieval_score_counts_copies_from_the_needle():
    # needle at positions 1..3 holds tokens 7 8 9; the answer copies them at positions 6, 7, 8
    tokens = torch.tensor([[0, 7, 8, 9, 0, 1, 7, 8, 9, 2]])
    A = torch.zeros(1, 2, 10, 10)
    for step, t in enumerate([5, 6, 7]):  # predicting tokens[t+1] = 7, 8, 9
        A[0, 0, t, 1 + step] = -2.0  # head 0 looks at the right needle token (signed)
        A[0, 1, t, 0] = 1.0  # head 1 looks elsewhere
    s = retrieval_score(A, tokens, needle=(1, 4), answer_positions=[5, 6, 7])
    assert torch.allclose(s, torch.tensor([[1.0, 0.0]]))
    with pytest.raises(ValueError, match="needle"):
        retrieval_score(A, tokens, needle=(4, 2), answer_positions=[5])
