"""Recitation metrics on constructed cases: a model whose logits are fixed by construction (the next
token is a known function of the current one), hand-made token lists for the distance, closed forms
for perplexity and top-k agreement."""

from __future__ import annotations

import functools
import math
import random

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.memorization import (greedy_continue, held_out_perplexity, probe_windows, recitation_scores,
                                             recitation_table, summarize, token_levenshtein, topk_agreement)

V = 16


def successor(t: int) -> int:
    return 0 if t == 5 else (t + 1) % V  # a "glitch" at 5 so the rule is not plain +1


def table_model(scores: torch.Tensor) -> HookedFastWeightLM:
    """logits[b, t] = scores[tokens[b, t]]: one-hot embedding, zero mixer output, no norm/MLP/positions."""
    cfg = ModelConfig(d_vocab=V, d_model=V, n_layers=1, n_heads=1, d_head=4, mixer="softmax", norm="none",
                      mlp="none", positional="none")
    model = HookedFastWeightLM(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.embed.W_E.copy_(torch.eye(V))
        model.unembed.W_U.copy_(scores)
    return model


def successor_model(margin: float = 10.0) -> HookedFastWeightLM:
    scores = torch.zeros(V, V)
    for t in range(V):
        scores[t, successor(t)] = margin
    return table_model(scores)


def walk(start: int, n: int) -> list[int]:
    out, t = [], start
    for _ in range(n):
        t = successor(t)
        out.append(t)
    return out


@functools.lru_cache(maxsize=None)
def lev_recursive(a: tuple, b: tuple) -> int:
    """The textbook recursive definition (independent of the DP's row layout)."""
    if not a or not b:
        return len(a) + len(b)
    return min(lev_recursive(a[1:], b) + 1, lev_recursive(a, b[1:]) + 1,
               lev_recursive(a[1:], b[1:]) + (a[0] != b[0]))


def test_levenshtein_hand_cases_and_recursion():
    assert token_levenshtein([], []) == 0
    assert token_levenshtein([1, 2, 3], [1, 2, 3]) == 0
    assert token_levenshtein([1, 2, 3], [1, 3]) == 1
    assert token_levenshtein([1, 2, 3, 4], [2, 3, 4, 5]) == 2  # delete 1, insert 5
    kitten, sitting = [10, 8, 19, 19, 4, 13], [18, 8, 19, 19, 8, 13, 6]  # "kitten" → "sitting"
    assert token_levenshtein(kitten, sitting) == 3
    assert token_levenshtein(torch.tensor([7, 7, 7]), torch.tensor([7])) == 2
    rng = random.Random(0)
    for _ in range(200):
        a = tuple(rng.randrange(3) for _ in range(rng.randrange(7)))
        b = tuple(rng.randrange(3) for _ in range(rng.randrange(7)))
        assert token_levenshtein(a, b) == lev_recursive(a, b) == token_levenshtein(b, a)


def test_greedy_continuation_of_a_constructed_model():
    model = successor_model()
    prefixes = torch.tensor([[1, 9, 3], [0, 0, 14], [2, 2, 5]])
    gen = greedy_continue(model, prefixes, 6, batch_size=2)  # batches of 2 and 1
    assert gen.tolist() == [walk(3, 6), walk(14, 6), walk(5, 6)]
    ties = table_model(torch.zeros(V, V))  # all logits equal: argmax picks the lowest id
    assert greedy_continue(ties, prefixes, 2).tolist() == [[0, 0]] * 3


def test_scores_on_constructed_suffixes():
    gen = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]] * 4)
    suffixes = torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8],     # exact
                             [1, 2, 3, 4, 0, 6, 7, 8],     # one substitution: 1 − 1/8 = 0.875 ≥ 0.75
                             [1, 2, 0, 4, 0, 6, 7, 8],     # two: 0.75, loose by the ≥
                             [0, 2, 0, 4, 0, 6, 7, 8]])    # three: 0.625
    df = recitation_scores(gen, suffixes)
    assert df.strict.tolist() == [True, False, False, False]
    assert df.loose.tolist() == [True, True, True, False]
    assert df.distance.tolist() == [0, 1, 2, 3]
    assert df.norm_distance.tolist() == [0, 0.125, 0.25, 0.375]
    shifted = recitation_scores(torch.tensor([[2, 3, 4, 5, 6, 7, 8, 9]]), torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]]))
    assert shifted.distance.item() == 2 and shifted.loose.item()  # a shift costs 2 edits, not 8


def test_table_by_prefix_length_offset_and_meta():
    model = successor_model()
    follow = torch.tensor([[3] + walk(3, 11)])          # obeys the rule everywhere: recited from any window
    broken = torch.tensor([[9, 10, 11, 2, 3, 4, 8, 9, 10, 11, 12, 13]])  # breaks the rule at 3 and 6
    seqs = torch.cat([follow, broken])
    import pandas as pd

    meta = pd.DataFrame({"repetitions": [8, 1]})
    tab = recitation_table(model, seqs, prefix_lens=[2, 3], suffix_len=4, offsets=[0, 5], meta=meta)
    assert len(tab) == 2 * 2 * 2
    assert tab[tab.seq == 0].strict.all()
    row = tab[(tab.seq == 1) & (tab.prefix_len == 2) & (tab.offset == 0)].iloc[0]
    # prefix [9, 10] → greedy 11, 12, 13, 14 vs true suffix [11, 2, 3, 4]: three substitutions
    assert (row.distance, row.strict, row.loose) == (3, False, False)
    row = tab[(tab.seq == 1) & (tab.prefix_len == 2) & (tab.offset == 5)].iloc[0]
    # prefix [4, 8] → 9, 10, 11, 12 = the true suffix
    assert row.strict and row.distance == 0
    by_rep = summarize(tab, ["repetitions"]).set_index("repetitions")
    assert by_rep.loc[8, "strict_acc"] == 1.0 and by_rep.loc[8, "n"] == 4
    assert summarize(tab).n.item() == 8
    with pytest.raises(ValueError, match="cannot group by"):
        summarize(tab, ["frequency"])


def test_probe_windows():
    seq = torch.arange(10)[None]
    p, s = probe_windows(seq, 3, 4, offset=2)
    assert p.tolist() == [[2, 3, 4]] and s.tolist() == [[5, 6, 7, 8]]
    with pytest.raises(ValueError, match="exceeds the sequence length"):
        probe_windows(seq, 3, 4, offset=4)


def test_perplexity_closed_forms():
    uniform = table_model(torch.zeros(V, V))
    tokens = torch.randint(0, V, (3, 9), generator=torch.Generator().manual_seed(0))
    assert held_out_perplexity(uniform, [tokens, tokens[:1]]) == pytest.approx(V, rel=1e-6)
    model = successor_model(margin=4.0)
    seqs = torch.tensor([[3] + walk(3, 7), [12] + walk(12, 7)])
    expected = 1 + (V - 1) * math.exp(-4.0)  # every prediction: p(true) = e⁴ / (e⁴ + 15)
    assert held_out_perplexity(model, seqs) == pytest.approx(expected, rel=1e-6)


def test_topk_agreement_constructed():
    ranks = torch.arange(V, dtype=torch.float32).expand(V, V).clone()  # same scores for every token
    a = table_model(ranks)  # top-10 = {6, …, 15}
    swapped = ranks.clone()
    swapped[:, [0, 15]] = swapped[:, [15, 0]]  # B's top-10 = {6, …, 14, 0}
    b = table_model(swapped)
    tokens = torch.randint(0, V, (2, 7), generator=torch.Generator().manual_seed(1))
    assert topk_agreement(a, a, tokens) == 1.0
    assert topk_agreement(a, b, [tokens, tokens[:, :3]]) == pytest.approx(0.9)
    assert topk_agreement(a, b, tokens, k=1) == 0.0  # 15 vs 14
    with pytest.raises(ValueError, match="exceeds the vocabulary"):
        topk_agreement(a, b, tokens, k=V + 1)
