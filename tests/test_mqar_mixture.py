"""MQARMixture: one setting per batch, equal tokens per batch, rebuilt from its dict and from a run config."""

from __future__ import annotations

import pytest
import torch

from workbench import ModelConfig, TrainConfig
from workbench.training.run_config import run_config_from_dict
from workbench.tasks import MQAR, MQARMixture, task_from_dict


def test_each_batch_is_one_setting_with_the_same_number_of_tokens():
    mix = MQARMixture((MQAR(64, 16, 2), MQAR(64, 32, 4)))
    gen = torch.Generator().manual_seed(0)
    shapes = [tuple(mix.sample(4, gen).tokens.shape) for _ in range(40)]
    assert set(shapes) == {(8, 16), (4, 32)}
    a = mix.sample(4, torch.Generator().manual_seed(5))
    b = mix.sample(4, torch.Generator().manual_seed(5))
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.loss_mask, b.loss_mask)
    assert (mix.d_vocab, mix.seq_len) == (64, 32)


def test_a_batch_is_exactly_the_chosen_tasks_batch():
    """Same generator stream: one randint picks the task, then that task samples."""
    tasks = (MQAR(64, 16, 2), MQAR(64, 32, 4))
    gen = torch.Generator().manual_seed(11)
    got = MQARMixture(tasks).sample(3, gen)
    ref = torch.Generator().manual_seed(11)
    task = tasks[int(torch.randint(2, (1,), generator=ref))]
    want = task.sample(3 * 32 // task.seq_len, ref)
    assert torch.equal(got.tokens, want.tokens) and got.pairs == want.pairs


def test_round_trips_and_is_a_run_config_task():
    mix = MQARMixture((MQAR(512, 64, 4), MQAR(512, 256, 16)))
    assert task_from_dict(mix.to_dict()) == mix
    run = run_config_from_dict({"model": ModelConfig(d_vocab=512, n_ctx=256).to_dict(), "task": mix.to_dict(),
                                "train": TrainConfig(steps=5).to_dict()})
    assert run.task == mix


def test_bad_mixtures_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="vocab_size"):
        MQARMixture((MQAR(64, 16, 2), MQAR(48, 16, 2)))
    with pytest.raises(ValueError, match="at least one"):
        MQARMixture(())
    with pytest.raises(ValueError, match="MQAR tasks only"):
        MQARMixture(({"name": "retrieval"},))
