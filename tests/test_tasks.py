"""Tasks deliver what they promise, checked by brute force on every sequence."""

from __future__ import annotations

import pytest
import torch

from workbench.tasks import MQAR, AssociativeRecall, task_from_dict


@pytest.mark.parametrize("random_filler", [True, False])
def test_mqar_sequences_answer_every_key_once_with_its_value(random_filler):
    task = MQAR(vocab_size=70, seq_len=64, num_kv_pairs=8, random_non_queries=random_filler)
    batch = task.sample(50, torch.Generator().manual_seed(1))
    assert batch.tokens.shape == (50, 64) and batch.loss_mask.shape == (50, 63)
    for seq, mask, pairs in zip(batch.tokens.tolist(), batch.loss_mask.tolist(), batch.pairs):
        keys, values = seq[0:16:2], seq[1:16:2]
        assert len(set(keys)) == 8 and all(1 <= k < 35 for k in keys)
        assert len(set(values)) == 8 and all(35 <= v < 70 for v in values)
        binding = dict(zip(keys, values))
        scored = [t for t, m in enumerate(mask) if m]
        assert len(scored) == 8
        assert sorted(seq[t] for t in scored) == sorted(keys)  # every key queried once
        for t in scored:
            assert t >= 16 and (t - 16) % 2 == 0
            assert seq[t + 1] == binding[seq[t]]  # the next token is the bound value
        assert pairs == [(2 * i, 2 * i + 1) for i in range(8)]
        if not random_filler:
            filler = [x for t, x in enumerate(seq[16:], 16) if t not in scored and t - 1 not in scored]
            assert set(filler) <= {0}


def test_mqar_gap_law_and_determinism():
    task = MQAR(vocab_size=300, seq_len=256, num_kv_pairs=4, power_a=0.01)
    p = task.gap_probabilities()
    assert p.shape == (124,) and abs(float(p.sum()) - 1) < 1e-12
    assert torch.allclose(p[1] / p[0], torch.tensor(2.0 ** (0.01 - 1), dtype=torch.float64))
    a = task.sample(8, torch.Generator().manual_seed(3))
    b = task.sample(8, torch.Generator().manual_seed(3))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.loss_mask, b.loss_mask)
    # short gaps dominate: the mean query offset is far below uniform's
    big = task.sample(400, torch.Generator().manual_seed(4))
    offsets = (big.loss_mask.nonzero()[:, 1] - 8).float() / 2
    assert offsets.mean() < 0.5 * 61.5
    assert task_from_dict(task.to_dict()) == task


@pytest.mark.parametrize("kwargs, msg", [(dict(seq_len=31), "even"), (dict(vocab_size=30, seq_len=32), "vocab_size"),
                                          (dict(num_kv_pairs=9, seq_len=32), "4·num_kv_pairs")])
def test_mqar_rejects_impossible_settings(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        MQAR(**kwargs)


def _recall_answers_by_brute_force(seq: list[int], num_pairs: int) -> dict[int, int]:
    """Scan the context and, for every later query, look its key up: position → expected next token."""
    store = {}
    for i in range(num_pairs):
        assert seq[2 * i] not in store, "keys must be distinct within a sequence"
        store[seq[2 * i]] = seq[2 * i + 1]
    return {t: store[seq[t]] for t in range(2 * num_pairs, len(seq), 2)}


@pytest.mark.parametrize("kwargs", [dict(), dict(num_pairs=5, num_keys=5, num_values=3, num_queries=9),
                                    dict(num_pairs=1, num_keys=7, num_values=1, num_queries=1)])
def test_associative_recall_answers_every_query_with_its_bound_value(kwargs):
    task = AssociativeRecall(**kwargs)
    n, k, v, m = task.num_pairs, task.num_keys, task.num_values, task.num_queries
    assert task.d_vocab == k + v and task.seq_len == 2 * (n + m)
    batch = task.sample(64, torch.Generator().manual_seed(5))
    assert batch.tokens.dtype == torch.long and batch.loss_mask.dtype == torch.bool
    assert batch.tokens.shape == (64, task.seq_len) and batch.loss_mask.shape == (64, task.seq_len - 1)
    for seq, mask, pairs in zip(batch.tokens.tolist(), batch.loss_mask.tolist(), batch.pairs):
        assert all(0 <= x < k for x in seq[0::2]) and all(k <= x < k + v for x in seq[1::2])
        expected = _recall_answers_by_brute_force(seq, n)
        assert [t for t, on in enumerate(mask) if on] == sorted(expected)  # exactly the query positions
        assert all(seq[t + 1] == answer for t, answer in expected.items())
        assert pairs == [(2 * i, 2 * i + 1) for i in range(n)]


def test_associative_recall_is_seeded_and_covers_its_ranges():
    task = AssociativeRecall(num_pairs=3, num_keys=6, num_values=5, num_queries=4)
    a = task.sample(500, torch.Generator().manual_seed(11))
    b = task.sample(500, torch.Generator().manual_seed(11))
    c = task.sample(500, torch.Generator().manual_seed(12))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.loss_mask, b.loss_mask)
    assert not torch.equal(a.tokens, c.tokens)
    torch.manual_seed(0)  # the global RNG plays no part
    assert torch.equal(task.sample(500, torch.Generator().manual_seed(11)).tokens, a.tokens)
    assert set(a.tokens[:, 0:6:2].flatten().tolist()) == set(range(6))  # every key and value occurs
    assert set(a.tokens[:, 1:6:2].flatten().tolist()) == set(range(6, 11))
    queried = a.tokens[:, 6::2]
    stored = a.tokens[:, 0:6:2]
    slot = (queried[:, :, None] == stored[:, None, :]).float().argmax(-1)  # which pair each query asks
    assert set(slot.flatten().tolist()) == {0, 1, 2}  # queries drawn from all stored pairs
    assert task_from_dict(task.to_dict()) == task


@pytest.mark.parametrize("kwargs, msg", [(dict(num_pairs=0), "num_pairs must be a positive int"),
                                          (dict(num_pairs=5, num_keys=4), "raise num_keys"),
                                          (dict(num_values=2.5), "num_values must be a positive int")])
def test_associative_recall_rejects_impossible_settings(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        AssociativeRecall(**kwargs)
    with pytest.raises(ValueError, match="batch_size"):
        AssociativeRecall().sample(0, torch.Generator())
