"""TextCanaries: canaries written into real text at exact counts and positions, never into validation."""

from __future__ import annotations

import json

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.tasks import TextCanaries, task_from_dict
from workbench.tasks.text_canaries import occurrences
from workbench.training import TrainConfig, train

TASK = TextCanaries(vocab_size=300, seq_len=48, canary_len=12, repetitions=(1, 3, 7), positions=(0, 5, 36),
                    canaries_per_level=2, n_rows=400, seed=3)


def test_every_canary_occurs_exactly_its_repetitions_at_its_position_found_by_search():
    tokens = TASK.rows(torch.arange(TASK.n_rows))
    found = occurrences(TASK, tokens)
    table = TASK.canary_table()
    assert len(table) == TASK.n_canaries == 3 * 3 * 2
    counts = found.groupby("canary").size().reindex(table.canary, fill_value=0)
    assert counts.tolist() == table.repetitions.tolist()  # 1,1,..,3,..,7 exactly
    assert (found.position.to_numpy() == table.position.to_numpy()[found.canary.to_numpy()]).all()
    assert found.row.is_unique  # at most one canary per row
    # the schedule agrees with the search, and rows without a canary are untouched text windows
    which = TASK.row_canaries()
    assert sorted(found.row.tolist()) == (which >= 0).nonzero()[:, 0].tolist()
    clean = (which < 0).nonzero()[:, 0][:20]
    ids = TASK.data.train_ids
    for r in clean.tolist():
        row = tokens[r]
        starts = (ids.unfold(0, TASK.seq_len, 1) == row).all(1).nonzero()
        assert len(starts) >= 1


def test_a_canary_row_is_its_text_window_with_only_the_canary_span_replaced():
    which = TASK.row_canaries()
    r = int((which >= 0).nonzero()[0, 0])
    c = int(which[r])
    pos = int(TASK.canary_table().position[c])
    row = TASK.rows(torch.tensor([r]))[0]
    assert torch.equal(row[pos:pos + TASK.canary_len], TASK.canaries()[c])
    # the rest matches some window of the training text
    ids = TASK.data.train_ids
    win = ids.unfold(0, TASK.seq_len, 1)
    keep = torch.ones(TASK.seq_len, dtype=torch.bool)
    keep[pos:pos + TASK.canary_len] = False
    assert (win[:, keep] == row[keep]).all(1).any()


def test_training_batches_tile_the_rows_in_order_and_no_canary_is_in_validation():
    b = TASK.train_batch(3, 16)
    assert torch.equal(b.tokens, TASK.rows(torch.arange(48, 64))) and b.loss_mask.all()
    with pytest.raises(ValueError, match="n_rows"):
        TASK.train_batch(25, 16)
    val = torch.cat(TASK.validation(8))
    assert val.shape[1] == TASK.seq_len and len(occurrences(TASK, val)) == 0
    assert torch.equal(val.flatten(), TASK.data.val_ids[:val.numel()])
    # sample() draws training rows: every row it returns is one of the training set
    s = TASK.sample(6, torch.Generator().manual_seed(0)).tokens
    allrows = TASK.rows(torch.arange(TASK.n_rows))
    assert all((allrows == x).all(1).any() for x in s)
    assert torch.equal(s, TASK.sample(6, torch.Generator().manual_seed(0)).tokens)


def test_canaries_are_seeded_and_the_config_round_trips():
    again = task_from_dict(json.loads(json.dumps(TASK.to_dict())))
    assert again == TASK and torch.equal(again.canaries(), TASK.canaries())
    other = task_from_dict({**TASK.to_dict(), "seed": 4})
    assert not torch.equal(other.canaries(), TASK.canaries())
    assert not torch.equal(other.row_canaries(), TASK.row_canaries())
    assert int(TASK.canaries().max()) < TASK.d_vocab


def test_bad_configs_are_refused_with_the_fix():
    with pytest.raises(ValueError, match="does not fit"):
        TextCanaries(seq_len=48, canary_len=12, positions=(40,))
    with pytest.raises(ValueError, match="raise n_rows"):
        TextCanaries(repetitions=(100,), positions=(0,), canaries_per_level=2, n_rows=150)
    with pytest.raises(ValueError, match="repetitions"):
        TextCanaries(repetitions=(0,))
    with pytest.raises(ValueError, match="positions"):
        TextCanaries(positions=(-1,))
    with pytest.raises(ValueError, match="tokenizer"):
        TextCanaries(tokenizer="words")


def test_train_with_batches_sees_exactly_the_given_batches():
    task = TextCanaries(vocab_size=300, seq_len=16, canary_len=8, repetitions=(2,), positions=(0,),
                        canaries_per_level=1, n_rows=12)
    cfg = ModelConfig(d_vocab=task.d_vocab, d_model=16, n_layers=1, n_heads=2, d_head=8, n_ctx=16)
    tcfg = TrainConfig(steps=3, batch_size=4, eval_every=3, eval_batches=1)
    seen = []

    def batches(step):
        seen.append(step)
        return task.train_batch(step, 4)

    a = train(cfg, task, tcfg, progress=False, batches=batches).model
    b = train(cfg, task, tcfg, progress=False, batches=lambda s: task.train_batch(s, 4)).model
    c = train(cfg, task, tcfg, progress=False).model  # task.sample instead
    assert seen == [0, 1, 2]
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), c.state_dict().values()))
    assert isinstance(a, HookedFastWeightLM)
