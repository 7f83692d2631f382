"""Residual-stream decomposition of transformers models through nnsight: the contributions sum to the
model's own residual stream, and on a GPT-2 that our softmax model reproduces exactly they equal our
``decompose_residual`` component by component."""

from __future__ import annotations

import pytest
import torch

from foreign_models import tiny_gpt2, tiny_llama, tiny_qwen3_next
from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.foreign import ResidualLayout, decompose_residual_nnsight, gpt2_layout
from workbench.analysis.outliers import contribution_summary, decompose_residual

transformers = pytest.importorskip("transformers")
pytest.importorskip("nnsight")

IDS = torch.randint(0, 64, (2, 13), generator=torch.Generator().manual_seed(5))


def summed(df) -> torch.Tensor:  # [batch, pos]
    s = df.groupby(["batch", "pos"]).value.sum()
    return torch.tensor(s.to_numpy()).reshape(IDS.shape)


def outlier_dim(x: torch.Tensor) -> int:
    """The residual dimension of largest RMS over tokens (the outlier dimension)."""
    return int(x.pow(2).mean((0, 1)).argmax())


def block_io(model, blocks, mid_norm: str):
    """Residual streams entering each block, between mixer and MLP, and leaving it (torch hooks)."""
    pre, mid, post = {}, {}, {}
    handles = []
    for i, block in enumerate(blocks):
        handles.append(block.register_forward_pre_hook(lambda m, a, i=i: pre.__setitem__(i, a[0])))
        handles.append(getattr(block, mid_norm).register_forward_pre_hook(lambda m, a, i=i: mid.__setitem__(i, a[0])))
        handles.append(block.register_forward_hook(
            lambda m, a, out, i=i: post.__setitem__(i, out[0] if isinstance(out, tuple) else out)))
    try:
        with torch.no_grad():
            model(IDS)
    finally:
        for h in handles:
            h.remove()
    return {"resid_pre": pre, "resid_mid": mid, "resid_post": post}


@pytest.mark.parametrize("build", [tiny_gpt2, tiny_qwen3_next, tiny_llama], ids=["gpt2", "qwen3_next", "llama"])
def test_contributions_sum_to_the_residual_stream(build):
    model = build()
    gpt2 = model.config.model_type == "gpt2"
    blocks = model.transformer.h if gpt2 else model.model.layers
    streams = block_io(model, blocks, "ln_2" if gpt2 else "post_attention_layernorm")
    n = len(blocks)
    for site in ("resid_pre", "resid_mid", "resid_post"):
        for layer in range(n):
            resid = streams[site][layer]
            j = outlier_dim(resid)
            df = decompose_residual_nnsight(model, IDS, j, layer, site)
            torch.testing.assert_close(summed(df), resid[..., j].double(), rtol=1e-5, atol=1e-6)
            n_mixers = layer + (site != "resid_pre")
            n_mlps = layer + (site == "resid_post")
            assert (df.kind == "mlp").sum() == n_mlps * IDS.numel()
            assert df[df.kind == "head"].layer.nunique() == n_mixers
    # the heads of each mixer: 4 in GPT-2 and Llama; Qwen3-Next: 4 value heads (Gated DeltaNet), 2 (attention)
    heads = df[df.kind == "head"].groupby("layer")["head"].nunique().tolist()
    assert heads == ([4, 4, 2] if model.config.model_type == "qwen3_next" else [4] * n)


def to_hooked(gpt2) -> HookedFastWeightLM:
    """Our softmax model with a GPT-2's weights (exact when GPT-2's q/k/v biases are 0 and its GELU exact)."""
    c = gpt2.config
    d, h = c.n_embd, c.n_head
    cfg = ModelConfig(d_vocab=c.vocab_size, d_model=d, n_layers=c.n_layer, n_heads=h, d_head=d // h,
                      n_ctx=c.n_positions, mixer="softmax", norm="layernorm", mlp="gelu", d_mlp=4 * d,
                      norm_eps=c.layer_norm_epsilon)
    ours = HookedFastWeightLM(cfg).eval()
    t = gpt2.transformer
    with torch.no_grad():
        ours.embed.W_E.copy_(t.wte.weight)
        ours.pos_embed.W_pos.copy_(t.wpe.weight)
        for blk, ref in zip(ours.blocks, t.h):
            q, k, v = ref.attn.c_attn.weight.split(d, dim=1)  # Conv1D: [d_model, 3·d_model], x @ W
            for W, src in ((blk.attn.W_Q, q), (blk.attn.W_K, k), (blk.attn.W_V, v)):
                W.copy_(src.reshape(d, h, d // h).permute(1, 0, 2))
            blk.attn.W_O.copy_(ref.attn.c_proj.weight.reshape(h, d // h, d))
            blk.attn.b_O.copy_(ref.attn.c_proj.bias)
            for ln, rln in ((blk.ln1, ref.ln_1), (blk.ln2, ref.ln_2)):
                ln.w.copy_(rln.weight)
                ln.b.copy_(rln.bias)
            blk.mlp.W_in.copy_(ref.mlp.c_fc.weight)
            blk.mlp.b_in.copy_(ref.mlp.c_fc.bias)
            blk.mlp.W_out.copy_(ref.mlp.c_proj.weight)
            blk.mlp.b_out.copy_(ref.mlp.c_proj.bias)
        ours.ln_final.w.copy_(t.ln_f.weight)
        ours.ln_final.b.copy_(t.ln_f.bias)
        ours.unembed.W_U.copy_(gpt2.lm_head.weight.T)
    return ours


def test_equals_our_decompose_on_an_equivalent_gpt2():
    gpt2 = tiny_gpt2(activation="gelu")
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():  # non-zero biases and norm gains, so that each lands in its component; q/k/v biases stay 0
        for blk in gpt2.transformer.h:
            blk.attn.c_attn.bias.zero_()
            for p in (blk.attn.c_proj.bias, blk.mlp.c_fc.bias, blk.mlp.c_proj.bias, blk.ln_1.bias, blk.ln_2.bias):
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
            blk.ln_1.weight.copy_(1 + torch.randn(32, generator=gen) * 0.3)
        gpt2.transformer.wte.weight[:, 7] += 0.5  # an outlier dimension written by the token embedding
    ours = to_hooked(gpt2)
    with torch.no_grad():
        torch.testing.assert_close(ours(IDS), gpt2(IDS).logits, rtol=1e-4, atol=1e-5)
    for site, layer in (("resid_post", 2), ("resid_mid", 1), ("resid_pre", 1)):
        for neuron in (7, 20):
            theirs = decompose_residual_nnsight(gpt2, IDS, neuron, layer, site)
            mine = decompose_residual(ours, IDS, neuron, layer, site)
            assert theirs.component.tolist() == mine.component.tolist()
            assert (theirs.kind == mine.kind).all() and (theirs["head"] == mine["head"]).all()
            torch.testing.assert_close(torch.tensor(theirs.value.to_numpy()), torch.tensor(mine.value.to_numpy()),
                                       rtol=1e-5, atol=1e-6)
            top = [contribution_summary(df).nlargest(5, "mean_abs").component.tolist() for df in (theirs, mine)]
            assert top[0] == top[1]
    assert contribution_summary(decompose_residual_nnsight(gpt2, IDS, 7, 0, "resid_pre")).iloc[0].component == "embed"


def test_a_wrong_layout_or_active_dropout_is_refused():
    model = tiny_gpt2()
    with pytest.raises(ValueError, match="does not describe this model"):  # the position embedding is left out
        layout = gpt2_layout(model)
        decompose_residual_nnsight(model, IDS, 3, 1, layout=ResidualLayout(
            embeddings={"embed": "transformer.wte"}, blocks="transformer.h", attn_out=layout.attn_out, mlp="mlp",
            mid_norm="ln_2"))
    with pytest.raises(ValueError, match="none of the attention output projections"):
        decompose_residual_nnsight(model, IDS, 3, 1, layout=ResidualLayout(
            embeddings={"embed": "transformer.wte", "pos_embed": "transformer.wpe"}, blocks="transformer.h",
            attn_out={"attn.o_proj": 4}, mlp="mlp", mid_norm="ln_2"))
    with pytest.raises(ValueError, match="order the model runs them"):
        decompose_residual_nnsight(model, IDS, 3, 1, layout=ResidualLayout(
            embeddings={"pos_embed": "transformer.wpe", "embed": "transformer.wte"}, blocks="transformer.h",
            attn_out={"attn.c_proj": 4}, mlp="mlp", mid_norm="ln_2"))
    model.train()
    with pytest.raises(ValueError, match="dropout"):
        decompose_residual_nnsight(model, IDS, 3, 1)
    model.eval()
    with pytest.raises(ValueError, match="layer must be"):
        decompose_residual_nnsight(model, IDS, 3, 3)
    with pytest.raises(ValueError, match="neuron must be"):
        decompose_residual_nnsight(model, IDS, 32, 0)
    with pytest.raises(ValueError, match="site must be"):
        decompose_residual_nnsight(model, IDS, 0, 0, "resid_final")
