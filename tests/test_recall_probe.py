"""The associative-recall probe against the textbook recurrence and a hand-computed logit lens."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from test_fast_weights import loop_states
from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis import aggregate, probe_associations

TOKENS = torch.randint(0, 23, (2, 30), generator=torch.Generator().manual_seed(3))
PAIRS = [(0, 1), (4, 6), (10, 11)]


@pytest.mark.parametrize("mixer", ["delta", "gated_delta", "linear"])
def test_fidelity_and_error_match_the_textbook_states(mixer):
    model = HookedFastWeightLM(ModelConfig(d_vocab=23, d_model=32, n_heads=2, d_head=8, mixer=mixer, init_std=0.3))
    df = probe_associations(model, TOKENS, 1, PAIRS)
    _, cache = model.run_with_cache(TOKENS)
    states, _ = loop_states(model, cache, 1)
    k, v = cache["blocks.1.attn.hook_k"].double(), cache["blocks.1.attn.hook_v"].double()
    for _, r in df.sample(40, random_state=0).iterrows():
        got = torch.einsum("kv,k->v", states[r.seq, r.pos, r["head"]], k[r.seq, r.key_pos, r["head"]])
        want_v = v[r.seq, r.value_pos, r["head"]]
        assert abs(r.fidelity - float(F.cosine_similarity(got, want_v, dim=0))) < 1e-5
        assert abs(r.retrieval_error - float((got - want_v).norm() / want_v.norm())) < 1e-4
    assert (df.pos >= df.value_pos).all()
    assert set(df.n_stored) == {1, 2, 3}
    assert (df[df.n_stored == 1].key_overlap == 0).all()


def test_decode_is_the_head_logit_lens():
    cfg = ModelConfig(d_vocab=23, d_model=32, n_layers=1, n_heads=2, d_head=8, mixer="linear", mlp="none",
                      norm="none", init_std=0.3)
    model = HookedFastWeightLM(cfg)
    df = probe_associations(model, TOKENS, 0, PAIRS)
    _, cache = model.run_with_cache(TOKENS)
    states, _ = loop_states(model, cache, 0)
    k = cache["blocks.0.attn.hook_k"].double()
    attn = model.blocks[0].attn
    for _, r in df.sample(30, random_state=1).iterrows():
        got = torch.einsum("kv,k->v", states[r.seq, r.pos, r["head"]], k[r.seq, r.key_pos, r["head"]]).float()
        logits = got @ attn.W_O[r["head"]] @ model.unembed.W_U + model.unembed.b_U
        assert r.decodes == bool(logits.argmax() == TOKENS[r.seq, r.value_pos])


def test_aggregates_and_errors():
    model = HookedFastWeightLM(ModelConfig(d_vocab=23, d_model=32, n_heads=2, d_head=8))
    df = probe_associations(model, TOKENS, 0, PAIRS)
    by_lag = aggregate(df, "lag")
    row = by_lag[(by_lag["head"] == 1) & (by_lag["lag"] == 3)].iloc[0]
    assert row.fidelity == pytest.approx(df[(df["head"] == 1) & (df.lag == 3)].fidelity.mean())
    assert set(aggregate(df, "n_stored").n_stored) == {1, 2, 3}
    with pytest.raises(ValueError, match="outside"):
        probe_associations(model, TOKENS, 0, [(0, 40)])
    with pytest.raises(ValueError, match="by must be"):
        aggregate(df, "colour")
