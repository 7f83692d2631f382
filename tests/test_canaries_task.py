"""The synthetic canary task: seeded, canaries where and as often as configured, background follows its
chain; the K-FAC demonstration script runs end to end in quick mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from workbench.tasks.canaries import Canaries, realized_repetitions


def test_seeded_and_canaries_in_place():
    task = Canaries(vocab_size=20, seq_len=16, canary_len=6, repetitions=(50, 200), canaries_per_level=1,
                    n_sequences=1000, offset=3, branching=2)
    a = task.sample(64, torch.Generator().manual_seed(0))
    b = task.sample(64, torch.Generator().manual_seed(0))
    assert torch.equal(a.tokens, b.tokens) and a.loss_mask.all() and a.loss_mask.shape == (64, 15)
    canaries = task.canaries()
    assert canaries.shape == (2, 6)
    same = Canaries(vocab_size=20, seq_len=16, canary_len=6, repetitions=(50, 200), canaries_per_level=1,
                    n_sequences=1000, offset=3, branching=2)
    assert torch.equal(same.canaries(), canaries) and torch.equal(same.transitions(), task.transitions())
    other = Canaries(vocab_size=20, seq_len=16, canary_len=6, repetitions=(50, 200), canaries_per_level=1,
                     n_sequences=1000, offset=3, branching=2, seed=1)
    assert not torch.equal(other.canaries(), canaries)
    P = task.transitions()
    tokens = task.sample(2000, torch.Generator().manual_seed(1)).tokens
    window = tokens[:, 3:9]
    holds = [(window == c).all(1) for c in canaries]
    # canary rows: rates 0.05 and 0.2 (±4σ at n = 2000)
    assert abs(holds[0].double().mean() - 0.05) < 4 * (0.05 * 0.95 / 2000) ** 0.5
    assert abs(holds[1].double().mean() - 0.2) < 4 * (0.2 * 0.8 / 2000) ** 0.5
    # plain rows obey the chain throughout; canary rows outside the canary window
    plain = ~(holds[0] | holds[1])
    assert (P[tokens[plain, :-1], tokens[plain, 1:]] > 0).all()
    for lo, hi in ((0, 3), (9, 16)):
        seg = tokens[~plain, lo:hi]
        assert (P[seg[:, :-1], seg[:, 1:]] > 0).all()
    assert not (P[tokens[~plain, 3:8], tokens[~plain, 4:9]] > 0).all()  # the canaries themselves do not


def test_background_follows_the_chain_distribution():
    task = Canaries(vocab_size=6, seq_len=40, canary_len=4, repetitions=(1,), n_sequences=10, branching=3)
    x = task.background(4000, torch.Generator().manual_seed(2))
    P = task.transitions()
    assert torch.allclose(P.sum(1), torch.ones(6, dtype=torch.float64)) and ((P > 0).sum(1) == 3).all()
    counts = torch.zeros(6, 6, dtype=torch.float64)
    counts.index_put_((x[:, :-1].flatten(), x[:, 1:].flatten()), torch.ones(x[:, 1:].numel(), dtype=torch.float64),
                      accumulate=True)
    emp = counts / counts.sum(1, keepdim=True)
    n = counts.sum(1, keepdim=True)
    assert ((emp - P).abs() <= 5 * (P * (1 - P) / n).sqrt() + 1e-12).all()


def test_realized_repetitions_count_the_training_stream():
    task = Canaries(vocab_size=20, seq_len=12, canary_len=5, repetitions=(3, 30), canaries_per_level=2,
                    n_sequences=300)
    df = realized_repetitions(task, steps=10, batch_size=30, seed=4)
    g = torch.Generator().manual_seed(4)
    canaries = task.canaries()
    counted = torch.zeros(4, dtype=torch.long)
    for _ in range(10):
        tok = task.sample(30, g).tokens[:, :5]
        for i, c in enumerate(canaries):
            counted[i] += int((tok == c).all(1).sum())
    assert df.realized.tolist() == counted.tolist()
    assert df.repetitions.tolist() == [3, 3, 30, 30]


def test_bad_configs():
    with pytest.raises(ValueError, match="offset"):
        Canaries(seq_len=10, canary_len=8, offset=3)
    with pytest.raises(ValueError, match="raise n_sequences"):
        Canaries(repetitions=(600,), canaries_per_level=2, n_sequences=1000)
    with pytest.raises(ValueError, match="repetitions"):
        Canaries(repetitions=(0,))


@pytest.mark.integration
def test_demo_script_quick(tmp_path):
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, str(root / "scripts" / "kfac_canaries.py"), "--out", str(tmp_path),
                          "--quick", "--mixers", "delta"], capture_output=True, text=True, timeout=300, env=env,
                         cwd=root)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads((tmp_path / "results.json").read_text())
    run = out["runs"][0]
    assert out["quick"] and run["mixer"] == "delta"
    methods = [(r["method"], r["rho"]) for r in run["sweep"]]
    assert methods[0] == ("none", 1.0) and ("kfac", 0.6) in methods and ("svd", 0.6) in methods
    none = run["sweep"][0]
    assert none["top10_agreement"] == 1.0 and none["weight_rel_change"] == 0.0
