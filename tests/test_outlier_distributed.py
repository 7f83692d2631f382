"""Outlier statistics split over two torchrun processes (gloo, CPU) and all-reduced equal one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from workbench.analysis.outliers import OutlierStats
from workbench.analysis.outliers.distributed import all_reduce_stats, collect, summaries


@pytest.mark.integration
def test_torchrun_two_processes_match_one(tmp_path):
    out = tmp_path / "dist.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "workbench.analysis.outliers.distributed", "--out", str(out), "--batches", "7"]
    run = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(out.read_text())
    assert got["world_size"] == 2
    # one process over the whole stream (7 batches: rank 0 took 4, rank 1 took 3)
    single = summaries(collect(7))
    assert got["sites"].keys() == single.keys()
    for site, want in single.items():
        have = got["sites"][site]
        assert have["n_tokens"] == want["n_tokens"] == 7 * 4 * 32
        assert have["n_massive"] == want["n_massive"] == 7 * 4  # the planted first-token activations
        for key in ("kurtosis", "max_median_ratio", "signal_propagation", "max_abs", "massive_token_fraction"):
            assert have[key] == pytest.approx(want[key], rel=1e-12), key
        assert have["top_ratio"] == pytest.approx(want["top_ratio"], rel=1e-12)
    # and the ranks' shares really were partial
    assert collect(7, rank=1, world_size=2)["synthetic"].n_tokens == 3 * 4 * 32


def test_all_reduce_needs_a_process_group():
    with pytest.raises(ValueError, match="init_process_group"):
        all_reduce_stats(OutlierStats(4).update(torch.ones(1, 2, 4)))


@pytest.mark.integration
@pytest.mark.slow
def test_torchrun_trace_of_the_bundled_checkpoint_matches_one_process(tmp_path):
    out = tmp_path / "dist.json"
    ckpt = "workbench/checkpoints/toy-delta"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "workbench.analysis.outliers.distributed", "--out", str(out), "--batches", "5",
           "--checkpoint", ckpt, "--seq-len", "48"]
    run = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(out.read_text())["sites"]
    single = summaries(collect(5, checkpoint=ckpt, pos=48))
    assert got.keys() == single.keys() and len(single) == 2 * 7
    for site, want in single.items():
        for key in ("kurtosis", "max_median_ratio", "signal_propagation", "max_abs", "n_tokens", "n_massive"):
            assert got[site][key] == pytest.approx(want[key], rel=1e-9), (site, key)
