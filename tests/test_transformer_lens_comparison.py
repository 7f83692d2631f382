"""The qualitative claims of docs/transformer_lens.md, on a tiny random Qwen3.5 (benchmarks/compare_transformer_lens.py
at T = 48): our effective attention reconstructs the Gated DeltaNet read-out exactly and TransformerLens' bridge's
does not; our carry patch changes the patched position and every later one, as a re-run from the patched state
does, while theirs changes only the patched position's read-out."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def compare():
    transformers = pytest.importorskip("transformers")
    bridge = pytest.importorskip("transformer_lens.model_bridge")
    if not hasattr(transformers, "Qwen3_5TextConfig") or not hasattr(bridge, "TransformerBridge"):
        pytest.skip("needs transformers with Qwen3.5 and TransformerLens 4.x's bridge")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import compare_transformer_lens

    return compare_transformer_lens


def test_effective_attention_and_carry_patch_against_transformer_lens(compare, tmp_path):
    compare.build(tmp_path / "m")
    e = compare.exactness(tmp_path / "m", 48, 15)
    assert e["ours_ea"] <= 1e-5 < 1e-2 < e["theirs_ea"]
    moved = int(e["ours_changed"].split()[2])  # "p and N of the 32 after it"
    assert e["ours_changed"].startswith("p and ") and moved >= 24, e["ours_changed"]  # fades with the decay
    assert e["ours_patch_err"] <= 1e-5
    assert e["theirs_changed"] == "p and 0 of the 32 after it"  # their patch reaches one read-out only
    assert e["theirs_patch_err"] > 1e-3
