"""The benchmarks run (tiny sizes) and print their tables; speed itself is never asserted here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.integration
@pytest.mark.parametrize("script, needle", [("bench_kernels.py", ("ours chunk", "fast_weights ", "effective_attention ",
                                                                    "gated delta rule on cpu")),
                                            ("bench_hooks.py", "gated_delta"),
                                            ("bench_decay_precision.py", "fwd+bwd"), ("bench_generate.py", "rec_delta"),
                                            ("bench_pretrained.py", "source (transformers)"),
                                            ("bench_kernel_roads.py", "3. whole kernel")])
def test_benchmark_quick_mode_runs(script, needle):
    extra = ["--device", "cpu"] if script == "bench_kernels.py" else []  # the device table's code, on the CPU
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", *extra], capture_output=True,
                         text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(" ".join(["command: python", f"benchmarks/{script}", "--quick", *extra]))
    for text in (needle,) if isinstance(needle, str) else needle:
        assert text in out.stdout, text
