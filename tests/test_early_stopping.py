"""Early stopping in the training loop (``TrainConfig.stop_acc`` / ``patience`` / ``min_delta``): the rule on
hand-made histories, a run that reaches its target, one that plateaus, and a stopped run resumed."""

from __future__ import annotations

import pytest
import torch

from workbench import ModelConfig, TrainConfig, train
from workbench.tasks import MQAR
from workbench.training import stop_reason
from workbench.training import trainer as trainer_module

TASK = MQAR(vocab_size=24, seq_len=16, num_kv_pairs=2)
MODEL = ModelConfig(d_vocab=24, d_model=32, n_heads=2, n_layers=2, mixer="delta", d_mlp=64, n_ctx=16, chunk_size=16)


def _hist(*accs: float) -> list[dict]:
    """A history with an eval every second step holding the given accuracies."""
    out = []
    for i, a in enumerate(accs):
        out += [{"step": 2 * i + 1, "train_loss": 1.0}, {"step": 2 * i + 2, "train_loss": 1.0, "eval_acc": a}]
    return out


def test_the_rule_on_hand_made_histories():
    off = TrainConfig()
    assert stop_reason(_hist(0.1, 0.1, 0.1, 1.0), off) is None  # off by default
    target = TrainConfig(stop_acc=0.99)
    assert stop_reason([], target) is None and stop_reason(_hist(0.5, 0.98), target) is None
    assert stop_reason(_hist(0.5, 0.99), target) == "target"
    assert stop_reason(_hist(0.995, 0.5), target) is None  # only the latest eval counts
    plateau = TrainConfig(patience=2, min_delta=0.01)
    assert stop_reason(_hist(0.5, 0.505, 0.51), plateau) == "plateau"  # best of the last 2 ≤ 0.5 + 0.01
    assert stop_reason(_hist(0.5, 0.505, 0.52), plateau) is None  # 0.52 > 0.51
    assert stop_reason(_hist(0.5, 0.4), plateau) is None  # needs patience + 1 evals
    assert stop_reason(_hist(0.6, 0.5, 0.4, 0.3), plateau) == "plateau"  # falling counts as no improvement
    assert stop_reason(_hist(0.5, 0.9, 0.4, 0.3), plateau) == "plateau"  # the best before the window is 0.9
    assert stop_reason(_hist(0.2, 0.3, 0.4, 0.3), plateau) is None  # 0.4 in the window > 0.3 (best before) + 0.01
    both = TrainConfig(stop_acc=0.9, patience=1)
    assert stop_reason(_hist(0.95, 0.95), both) == "target"  # the target wins


def test_bad_early_stopping_settings_are_refused():
    for bad in (dict(stop_acc=0.0), dict(stop_acc=1.5), dict(patience=-1), dict(patience=1.5), dict(min_delta=-0.1)):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    cfg = TrainConfig(stop_acc=0.99, patience=3, min_delta=0.005)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("stop_acc", "patience", "min_delta")}
    assert TrainConfig.from_dict(old) == TrainConfig(**old)  # configs written before these fields still load


def _drop_seconds(history):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in history]


@pytest.mark.integration
def test_a_run_stops_at_its_target_with_the_same_steps_as_an_uncapped_prefix():
    torch.set_num_threads(1)
    cfg = TrainConfig(steps=400, batch_size=32, lr=1e-2, warmup_steps=10, eval_every=20, eval_batches=4,
                      stop_acc=0.6)
    stopped = train(MODEL, TASK, cfg, progress=False)
    assert stopped.stop == "target"
    last = stopped.history[-1]
    assert last["step"] < 400 and last["step"] % 20 == 0 and last["eval_acc"] >= 0.6
    assert all(h["eval_acc"] < 0.6 for h in stopped.history[:-1] if "eval_acc" in h)
    full = train(MODEL, TASK, TrainConfig(**{**cfg.to_dict(), "stop_acc": None}), progress=False)
    assert full.stop == "max_steps" and full.history[-1]["step"] == 400
    # the schedule is laid out over the cap, so the stopped run is the first steps of the full one
    assert _drop_seconds(full.history[:last["step"]]) == _drop_seconds(stopped.history)


def test_a_run_that_learns_nothing_stops_on_a_plateau():
    torch.set_num_threads(1)
    cfg = TrainConfig(steps=200, batch_size=8, lr=1e-7, warmup_steps=1, eval_every=5, eval_batches=2,
                      patience=3, min_delta=0.05)
    result = train(MODEL, TASK, cfg, progress=False)
    assert result.stop == "plateau" and result.history[-1]["step"] == 20  # evals at 5, 10, 15, 20


def test_a_stopped_run_resumed_does_not_train_on_and_a_crashed_one_stops_where_it_would(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    cfg = TrainConfig(steps=200, batch_size=8, lr=1e-7, warmup_steps=1, eval_every=5, eval_batches=2,
                      patience=3, min_delta=0.05)
    whole = train(MODEL, TASK, cfg, progress=False)
    calls = {"n": 0}
    real = trainer_module.masked_loss

    def flaky(model, batch):
        calls["n"] += 1
        if calls["n"] == 13:
            raise RuntimeError("killed at step 13")
        return real(model, batch)

    monkeypatch.setattr(trainer_module, "masked_loss", flaky)
    with pytest.raises(RuntimeError):
        train(MODEL, TASK, cfg, progress=False, resume_dir=tmp_path)
    monkeypatch.undo()
    resumed = train(MODEL, TASK, cfg, progress=False, resume_dir=tmp_path)  # from step 10 to the stop at 20
    assert resumed.stop == "plateau" and _drop_seconds(resumed.history) == _drop_seconds(whole.history)
    calls["n"] = 0
    monkeypatch.setattr(trainer_module, "masked_loss", flaky)  # the state now says: stopped at step 20
    again = train(MODEL, TASK, cfg, progress=False, resume_dir=tmp_path)
    assert calls["n"] == 0 and again.stop == "plateau"
    sa, sb = again.model.state_dict(), whole.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
