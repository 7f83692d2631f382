"""K-FAC factors all-reduced over two gloo processes (torchrun, CPU) equal one process's factors."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from workbench.analysis.kfac.distributed import collect_demo
from workbench.analysis.kfac import KFACFactors


@pytest.mark.integration
def test_torchrun_two_processes_equal_one(tmp_path):
    out = tmp_path / "dist.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "workbench.analysis.kfac.distributed", "--out", str(out), "--batches", "5"],
                         capture_output=True, text=True, timeout=120, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    saved = torch.load(out)
    assert saved["world_size"] == 2
    single = collect_demo(n_batches=5)
    assert sorted(saved["factors"]) == sorted(single)
    for name, s in single.items():
        d = KFACFactors.from_dict(saved["factors"][name])
        assert d.n_tokens == s.n_tokens == 5 * 2 * 12
        torch.testing.assert_close(d.A_sum, s.A_sum, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(d.G_sum, s.G_sum, rtol=1e-12, atol=1e-14)
        assert s.G_sum.abs().max() > 0
    # the ranks really split the stream: rank 0's share alone differs
    half = collect_demo(n_batches=5, rank=0, world_size=2)
    assert half["blocks.0.mlp.W_in"].n_tokens == 3 * 2 * 12
