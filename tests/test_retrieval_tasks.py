"""The retrieval settings of Schlag et al. 2021, checked against answers found by scanning each sequence."""

from __future__ import annotations

import pytest
import torch

from workbench.tasks import Retrieval, task_from_dict
from workbench.tasks.retrieval import last_occurrence


def _scan(keys: list[int], values: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """Store every pair in order, later writes overwriting earlier ones: key → value, key → its last position."""
    answer, where = {}, {}
    for p, (k, v) in enumerate(zip(keys, values)):
        answer[k], where[k] = v, p
    return answer, where


def _check_token_form(batch, S: int) -> None:
    """The token sequence says the same thing as the structured fields, and its answers follow by scanning."""
    L = batch.keys.shape[1]
    for b, seq in enumerate(batch.tokens.tolist()):
        ctx_keys, ctx_values = seq[0:2 * L:2], [t - S for t in seq[1:2 * L:2]]
        assert ctx_keys == batch.keys[b].tolist() and ctx_values == batch.values[b].tolist()
        assert all(0 <= k < S for k in ctx_keys) and all(0 <= v < S for v in ctx_values)
        answer, where = _scan(ctx_keys, ctx_values)
        scored = [t for t, m in enumerate(batch.loss_mask[b].tolist()) if m]
        real = [j for j, m in enumerate(batch.query_mask[b].tolist()) if m]
        assert scored == [2 * L + 2 * j for j in real]
        for j in range(batch.queries.shape[1]):
            q = seq[2 * L + 2 * j]
            assert q == batch.queries[b, j] and seq[2 * L + 2 * j + 1] == S + answer[q]  # padding too is valid
            assert batch.targets[b, j] == answer[q] and batch.target_pos[b, j] == where[q]
        assert batch.pairs[b] == [(2 * p, 2 * p + 1) for p in sorted(where.values())]


@pytest.mark.parametrize("all_queries", [False, True])
def test_setting1_stores_every_key_once_with_distinct_values(all_queries):
    S = 13
    task = Retrieval(num_keys=S, setting=1, num_queries=3)
    batch = task.sample(40, torch.Generator().manual_seed(0), all_queries=all_queries)
    assert batch.keys.shape == (40, S) and batch.values.shape == (40, S)
    for keys, values in zip(batch.keys.tolist(), batch.values.tolist()):
        assert sorted(keys) == list(range(S)) and sorted(values) == list(range(S))
    if all_queries:  # every key once, in increasing id, none padded
        assert batch.queries.tolist() == [list(range(S))] * 40 and bool(batch.query_mask.all())
    else:
        assert batch.queries.shape == (40, 3) and batch.tokens.shape == (40, task.seq_len)
    _check_token_form(batch, S)


@pytest.mark.parametrize("all_queries", [False, True])
def test_setting2_answers_with_the_last_value_bound_to_the_key(all_queries):
    S = 7
    task = Retrieval(num_keys=S, setting=2, num_queries=2)
    batch = task.sample(60, torch.Generator().manual_seed(1), all_queries=all_queries)
    assert batch.keys.shape == (60, 2 * S)
    _check_token_form(batch, S)
    rebound = 0
    for b in range(60):
        keys, values = batch.keys[b].tolist(), batch.values[b].tolist()
        answer, _ = _scan(keys, values)
        firsts = {}
        for k, v in zip(keys, values):
            firsts.setdefault(k, v)
        rebound += sum(firsts[k] != answer[k] for k in answer)
        if all_queries:
            n = len(answer)
            assert batch.queries[b, :n].tolist() == sorted(answer)  # every stored key, increasing id
            assert batch.query_mask[b].tolist() == [True] * n + [False] * (S - n)
    assert rebound > 0  # the task does exercise overwrites: a first-value lookup would fail


def test_setting2_asks_keys_in_proportion_to_how_often_they_were_stored():
    """The paper picks a stored *position* uniformly: a key stored c times is asked with probability c/L."""
    S = 6
    batch = Retrieval(num_keys=S, setting=2, num_queries=50).sample(400, torch.Generator().manual_seed(2))
    asked, expected = [], []
    for keys, queries in zip(batch.keys.tolist(), batch.queries.tolist()):
        counts = {k: keys.count(k) for k in set(keys)}
        asked += [counts[q] for q in queries]
        expected.append(sum(c * c for c in counts.values()) / len(keys))  # E[count of the asked key]
    uniform_over_keys = sum(2 * S / len(set(k)) for k in batch.keys.tolist()) / 400
    mean_asked, mean_expected = sum(asked) / len(asked), sum(expected) / len(expected)
    assert abs(mean_asked - mean_expected) < 0.03 * mean_expected
    assert abs(mean_asked - uniform_over_keys) > 0.1  # distinguishable from "a uniform distinct key"


def test_last_occurrence_matches_a_scan():
    keys = torch.randint(0, 9, (30, 25), generator=torch.Generator().manual_seed(3))
    got = last_occurrence(keys, 9)
    for row, out in zip(keys.tolist(), got.tolist()):
        _, where = _scan(row, row)
        assert out == [where.get(k, -1) for k in range(9)]


def test_seeded_by_the_generator_alone():
    task = Retrieval(num_keys=10, setting=2)
    torch.manual_seed(0)
    a = task.sample(8, torch.Generator().manual_seed(5), all_queries=True)
    torch.manual_seed(1)
    b = task.sample(8, torch.Generator().manual_seed(5), all_queries=True)
    c = task.sample(8, torch.Generator().manual_seed(6), all_queries=True)
    for name in ("tokens", "loss_mask", "keys", "values", "queries", "targets", "target_pos", "query_mask"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert not torch.equal(a.keys, c.keys)


def test_round_trip_and_sizes():
    task = Retrieval(num_keys=20, setting=2, num_queries=4)
    assert task_from_dict(task.to_dict()) == task
    assert (task.num_stores, task.d_vocab, task.seq_len) == (40, 40, 88)
    assert Retrieval(num_keys=20).num_stores == 20


@pytest.mark.parametrize("kwargs, msg", [(dict(setting=3), "setting must be 1"), (dict(num_keys=1), "at least 2"),
                                          (dict(num_queries=0), "num_queries"), (dict(num_keys=4.0), "num_keys")])
def test_rejects_bad_settings(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        Retrieval(**kwargs)
    with pytest.raises(ValueError, match="batch_size"):
        Retrieval().sample(0, torch.Generator())


@pytest.mark.parametrize("setting, length", [(1, 5), (2, 9)])
def test_length_overrides_the_number_of_stored_pairs(setting, length):
    """Setting 1 with L < S: L distinct keys and values; setting 2 with L = S: the paper's evaluation length."""
    S = 9
    task = Retrieval(num_keys=S, setting=setting, length=length)
    batch = task.sample(30, torch.Generator().manual_seed(7), all_queries=True)
    assert task.num_stores == length and batch.keys.shape == (30, length)
    _check_token_form(batch, S)
    for b in range(30):
        keys, values = batch.keys[b].tolist(), batch.values[b].tolist()
        if setting == 1:
            assert len(set(keys)) == length and len(set(values)) == length
        n = len(set(keys))
        assert batch.query_mask[b].tolist() == [True] * n + [False] * (S - n)
    assert task_from_dict(task.to_dict()) == task
    with pytest.raises(ValueError, match="length ≤ num_keys"):
        Retrieval(num_keys=S, setting=1, length=S + 1)
