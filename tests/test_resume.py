"""Runs that survive interruption: atomic writes, training resumed bit-identically after an exception or a
SIGKILL, case studies continued by the same command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from workbench import ModelConfig, TrainConfig, atomic, train
from workbench.run_dir import RunWriter
from workbench.tasks import MQAR
from workbench.training import resuming
from workbench.training import trainer as trainer_module

ROOT = Path(__file__).resolve().parents[1]
TASK = MQAR(vocab_size=24, seq_len=16, num_kv_pairs=2)
MODEL = ModelConfig(d_vocab=24, d_model=32, n_heads=2, n_layers=1, mixer="delta")


class Interrupted(Exception):
    pass


def _fail_at(monkeypatch, n: int) -> None:
    """Make the n-th training step (1-based) raise, as a crash would."""
    calls = {"n": 0}
    real = trainer_module.masked_loss

    def flaky(model, batch):
        calls["n"] += 1
        if calls["n"] == n:
            raise Interrupted(f"killed at step {n}")
        return real(model, batch)

    monkeypatch.setattr(trainer_module, "masked_loss", flaky)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_atomic_write_leaves_the_old_file_on_error(tmp_path):
    path = tmp_path / "results.json"
    atomic.write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic.replacing(path) as tmp:
            tmp.write_text('{"a": 2, "half')
            raise RuntimeError("crash mid-write")
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file left
    atomic.write_text(path, "x\n")
    assert path.read_text() == "x\n"


@pytest.mark.parametrize("optimizer", ["adamw", "soap"])
def test_training_resumes_bit_identically_after_a_crash(tmp_path, monkeypatch, optimizer):
    if optimizer == "soap":
        pytest.importorskip("pytorch_optimizer")
    torch.set_num_threads(1)
    cfg = TrainConfig(steps=14, batch_size=8, eval_every=4, eval_batches=1, warmup_steps=3, optimizer=optimizer,
                      precondition_frequency=3)
    whole = train(MODEL, TASK, cfg, progress=False)
    _fail_at(monkeypatch, 7)  # after the state of step 4 was saved, before that of step 8
    with pytest.raises(Interrupted):
        train(MODEL, TASK, cfg, progress=False, resume_dir=tmp_path)
    saved = list(tmp_path.glob("train_state-*.pt"))
    assert len(saved) == 1 and torch.load(saved[0], weights_only=True)["step"] == 4
    monkeypatch.undo()
    resumed = train(MODEL, TASK, cfg, progress=False, resume_dir=tmp_path)
    assert _same(whole.model, resumed.model)
    drop = lambda h: [{k: v for k, v in r.items() if k != "seconds"} for r in h]  # noqa: E731
    assert drop(whole.history) == drop(resumed.history)
    # a different run never picks up this state
    other = train(MODEL, TASK, TrainConfig(**{**cfg.to_dict(), "seed": 1}), progress=False, resume_dir=tmp_path)
    assert not _same(whole.model, other.model)


def test_run_directory_survives_a_crash_and_the_same_call_finishes_it(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    out = tmp_path / "run"
    cfg = TrainConfig(steps=12, batch_size=8, eval_every=3, eval_batches=1, save_every=3, out_dir=str(out))
    whole = train(MODEL, TASK, TrainConfig(**{**cfg.to_dict(), "out_dir": str(tmp_path / "whole")}), progress=False)
    _fail_at(monkeypatch, 8)
    with pytest.raises(Interrupted):
        train(MODEL, TASK, cfg, progress=False)
    assert not out.exists()  # nothing half-written in place
    partial = tmp_path / ".run.partial"
    assert sorted(p.name for p in partial.iterdir() if p.is_dir()) == ["step_3", "step_6"]
    monkeypatch.undo()
    resumed = train(MODEL, TASK, cfg, progress=False)
    assert _same(whole.model, resumed.model) and not partial.exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in (tmp_path / "whole").iterdir())
    for step in ("step_3", "step_6", "step_9", "step_12"):
        a, b = (load_file(str(d / step / "model.safetensors")) for d in (out, tmp_path / "whole"))
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert not list(out.glob("train_state-*"))


def test_a_partial_directory_without_state_is_not_kept(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError):
        with RunWriter(out):
            raise ValueError("fails before any training")
    assert list(tmp_path.iterdir()) == []


def _sigkill_when(cmd: list[str], ready, timeout: float = 120.0) -> None:
    """Start ``cmd`` and SIGKILL it as soon as ``ready()`` is true."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                pytest.fail(f"{cmd} finished before it could be killed")
            if time.monotonic() > deadline:
                pytest.fail(f"{cmd} never reached the point to kill it")
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()


@pytest.mark.integration
def test_workbench_train_killed_mid_run_continues_to_the_same_weights(tmp_path):
    run = {"model": MODEL.to_dict(), "task": TASK.to_dict(),
           "train": {"steps": 400, "batch_size": 8, "eval_every": 20, "eval_batches": 1}}
    (tmp_path / "run.json").write_text(json.dumps(run))
    cli = [sys.executable, "-m", "workbench.cli", "train", str(tmp_path / "run.json"), "--out"]
    subprocess.run(cli + [str(tmp_path / "whole")], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    partial = tmp_path / ".killed.partial"

    def mid_run() -> bool:
        states = list(partial.glob("train_state-*.pt")) if partial.is_dir() else []
        return bool(states) and torch.load(states[0], weights_only=True)["step"] >= 60

    _sigkill_when(cli + [str(tmp_path / "killed")], mid_run)
    assert not (tmp_path / "killed").exists()
    subprocess.run(cli + [str(tmp_path / "killed")], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    a, b = (load_file(str(tmp_path / d / "model.safetensors")) for d in ("whole", "killed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = (json.loads((tmp_path / d / "history.json").read_text()) for d in ("whole", "killed"))
    assert [r["train_loss"] for r in ha] == [r["train_loss"] for r in hb]


def test_resuming_scope_gives_train_its_state_dir(tmp_path, monkeypatch):
    cfg = TrainConfig(steps=6, batch_size=4, eval_every=3, eval_batches=1)
    _fail_at(monkeypatch, 5)
    with resuming(tmp_path), pytest.raises(Interrupted):
        train(MODEL, TASK, cfg, progress=False)
    assert len(list(tmp_path.glob("train_state-*.pt"))) == 1


def _without_timings(data):
    if isinstance(data, dict):
        return {k: _without_timings(v) for k, v in data.items() if "seconds" not in k}
    if isinstance(data, list):
        return [_without_timings(v) for v in data]
    return data


@pytest.mark.integration
def test_a_case_study_killed_mid_run_finishes_with_the_same_results(tmp_path):
    """``python -m case_studies.mqar --quick`` SIGKILLed while training its second run (the first finished),
    then run again with the same command: the results (all but timings) and the checkpoints equal those of
    a run never interrupted."""
    cmd = [sys.executable, "-m", "case_studies.mqar", "--quick", "--no-png", "--out"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    subprocess.run(cmd + [str(tmp_path / "whole")], cwd=ROOT, env=env, check=True, capture_output=True)
    progress = tmp_path / "killed" / ".progress"

    def second_run_training() -> bool:
        return progress.is_dir() and any(progress.glob("*.json")) and any(progress.glob("*/train_state-*.pt"))

    _sigkill_when(cmd + [str(tmp_path / "killed")], second_run_training)
    assert not (tmp_path / "killed" / "results.json").exists()
    subprocess.run(cmd + [str(tmp_path / "killed")], cwd=ROOT, env=env, check=True, capture_output=True)
    whole, killed = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("whole", "killed"))
    assert _without_timings(whole["runs"]) == _without_timings(killed["runs"])
    assert not progress.exists()
    for run in whole["runs"]:
        a, b = (load_file(str(tmp_path / d / "checkpoints" / run["name"] / "model.safetensors"))
                for d in ("whole", "killed"))
        assert all(torch.equal(a[k], b[k]) for k in a)
