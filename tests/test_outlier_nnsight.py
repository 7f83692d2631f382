"""Outlier statistics of a transformers GPT-2 (built offline from a small config, random weights) read
through nnsight equal those of the model's own hidden states and of plain torch forward hooks."""

from __future__ import annotations

import pytest
import torch

from workbench.analysis.outliers import OutlierStats, outlier_table
from workbench.analysis.outliers.nnsight_trace import gpt2_sites, trace_nnsight

transformers = pytest.importorskip("transformers")
pytest.importorskip("nnsight")

G = torch.Generator().manual_seed(3)
BATCHES = [torch.randint(0, 64, (2, 16), generator=G) for _ in range(3)]


def gpt2(n_layer=3):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=n_layer, n_head=4,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def assert_same(a: OutlierStats, b: OutlierStats):
    ra, rb = a.result(), b.result()
    assert ra.n_tokens == rb.n_tokens == 6 * 16
    for key in ("kurtosis", "max_median_ratio", "signal_propagation", "max_abs"):
        assert getattr(ra, key) == pytest.approx(getattr(rb, key), rel=1e-12), key
    assert torch.allclose(a.sum_sq, b.sum_sq, rtol=1e-12)


def test_nnsight_statistics_equal_hidden_states_and_torch_hooks():
    model = gpt2()
    stats = trace_nnsight(model, BATCHES, gpt2_sites(3), progress=False)
    assert list(stats) == ["blocks.0.resid_pre", "blocks.0.mlp_hidden", "blocks.1.resid_pre", "blocks.1.mlp_hidden",
                           "blocks.2.resid_pre", "blocks.2.mlp_hidden", "ln_final"]
    # the model's own hidden states: [i] enters block i, the last one is after ln_f
    hidden = [OutlierStats(32) for _ in range(4)]
    mlp = [OutlierStats(128) for _ in range(3)]

    def record(i):
        def hook(module, args, out):  # returns None: the output is left alone
            mlp[i].update(out)
        return hook

    handles = [model.transformer.h[i].mlp.act.register_forward_hook(record(i)) for i in range(3)]
    try:
        with torch.no_grad():
            for ids in BATCHES:
                hs = model(ids, output_hidden_states=True).hidden_states
                assert len(hs) == 4
                for acc, h in zip(hidden, hs):
                    acc.update(h)
    finally:
        for h in handles:
            h.remove()
    for i in range(3):
        assert_same(stats[f"blocks.{i}.resid_pre"], hidden[i])
        assert_same(stats[f"blocks.{i}.mlp_hidden"], mlp[i])
    assert_same(stats["ln_final"], hidden[3])
    assert stats["blocks.1.mlp_hidden"].width == 128


def test_nnsight_sites_are_checked():
    model = gpt2(n_layer=1)
    with pytest.raises(ValueError, match="no module 'transformer.h.5'"):
        trace_nnsight(model, BATCHES, {"x": "transformer.h.5:output"}, progress=False)
    with pytest.raises(ValueError, match=":input' or ':output"):
        trace_nnsight(model, BATCHES, {"x": "transformer.h.0:grad"}, progress=False)
    with pytest.raises(ValueError, match="order the model runs them"):
        trace_nnsight(model, BATCHES, {"late": "transformer.ln_f", "early": "transformer.h.0:input"}, progress=False)


def test_importing_nnsight_does_not_shadow_workbench_save():
    import nnsight  # noqa: F401  (mounts .save on every object)

    import workbench
    from workbench import save
    from workbench.checkpoint import save as checkpoint_save

    assert save is checkpoint_save and workbench.save is checkpoint_save
