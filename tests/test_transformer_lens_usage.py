"""TransformerLens usage as its documentation shows it (ActivationCache methods, a direct logit attribution, the
``patching`` functions, ``get_act_name``, ``head_detector``, ``FactoredMatrix`` circuits) on a shipped checkpoint of
every mixer: each per-checkpoint test changes only the line that loads the model (the ``model`` fixture).

Decompositions are checked to sum to the model's own residual stream and logits within 1e-5 · max(1, |target|)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformer_lens import ActivationCache, FactoredMatrix, head_detector, patching
from transformer_lens.utilities import get_act_name

from workbench import HookedFastWeightLM, ModelConfig, load
from workbench.components.moe import MoEConfig
from workbench.mixers import NotDefinedForMixer, names

pytestmark = pytest.mark.integration  # end-to-end on every checkpoint and mixer: the full suite, not the fast loop

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = ["toy-delta", "toy-delta-lstm", "toy-delta-rnn", "toy-fwm", "toy-rec-delta", "toy-srwm",
               "mqar-softmax-d64", "mqar-linear-d64", "mqar-gated-delta-d64"]


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-5) -> None:
    a, b = torch.as_tensor(a).detach(), b.detach()
    err, scale = float((a - b).abs().max()), max(1.0, float(b.abs().max()))
    assert err <= rel * scale, f"error {err:.3g} > {rel:g} × {scale:.3g}"


def some_tokens(model, seed: int = 0, batch: int = 2, pos: int = 8) -> torch.Tensor:
    return torch.randint(0, model.cfg.d_vocab, (batch, min(pos, model.cfg.n_ctx)),
                         generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=CHECKPOINTS)
def model(request):
    return load(ROOT / "workbench" / "checkpoints" / request.param)  # the only line that names the model


# ---------------------------------------------------------------------- per checkpoint: TransformerLens usage
def test_load_returns_eval_mode(model):
    assert not model.training and not any(m.training for m in model.modules())


def test_run_with_cache_gives_an_activation_cache(model):
    tokens = some_tokens(model)
    logits, cache = model.run_with_cache(tokens)
    assert isinstance(cache, ActivationCache) and cache.model is model
    assert torch.equal(logits, model(tokens))
    _, plain = model.run_with_cache(tokens, return_cache_object=False)
    assert type(plain) is dict and plain.keys() == cache.keys()
    n = model.cfg.n_layers
    if "blocks.0.attn.hook_v" in model.hook_dict:
        assert torch.equal(cache["v", 0], cache["blocks.0.attn.hook_v"])
    assert torch.equal(cache["resid_pre", -1], cache[f"blocks.{n - 1}.hook_resid_pre"])
    assert torch.equal(cache["z", 1, "attn"], cache["blocks.1.attn.hook_z"])
    assert torch.equal(cache["scale"], cache["ln_final.hook_scale"])
    names = [(("resid_pre", 0), "blocks.0.hook_resid_pre"), (("attn_out", 1), "blocks.1.hook_attn_out"),
             (("normalized", 0, "ln1"), "blocks.0.ln1.hook_normalized"), (("embed",), "hook_embed"),
             (("q", 0), "blocks.0.attn.hook_q")]
    if not model.cfg.attn_only:
        names += [(("mlp_out", 0), "blocks.0.hook_mlp_out"), (("post", 1), "blocks.1.mlp.hook_post")]
    for short, full in names:
        assert get_act_name(*short) == full and full in model.hook_dict
        assert torch.equal(cache[short], cache[full])
    stacked = cache.stack_activation("resid_post")
    assert stacked.shape == (n, *cache["resid_post", 0].shape)
    one = cache.apply_slice_to_batch_dim(0)
    assert torch.equal(one["resid_post", 0], cache["resid_post", 0][0]) and isinstance(one, type(cache))
    _, single = model.run_with_cache(tokens[:1], remove_batch_dim=True)
    close(single["resid_post", 0], cache["resid_post", 0][0])
    assert single.to("cpu") is single and len(single) == len(cache)
    n_last = model.cfg.n_layers - 1  # the decompositions work without the batch axis too
    close(single.get_full_resid_decomposition(expand_neurons=False).sum(0), single["resid_post", n_last])
    with pytest.raises(KeyError, match="not cached"):
        model.run_with_cache(tokens, names_filter="hook_embed")[1]["resid_pre", 0]


def test_tokens_and_generation_as_transformer_lens_documents_them(model):
    """TransformerLens' Main Demo habits: string tokens, one token, and greedy generation (the fast-weight state
    and the key/value cache carried from step to step, equal to re-running the prefix)."""
    tokens = some_tokens(model, batch=1)
    strings = model.to_str_tokens(tokens[0])
    assert len(strings) == tokens.shape[1] and all(isinstance(t, str) for t in strings)
    assert model.to_single_token(strings[2]) == int(tokens[0, 2])
    assert torch.equal(model.to_tokens(model.to_string(tokens[0])), tokens)
    out = model.generate(tokens, max_new_tokens=3, do_sample=False, verbose=False)
    rerun = model.generate(tokens, max_new_tokens=3, do_sample=False, verbose=False, use_past_kv_cache=False)
    assert out.shape == (1, tokens.shape[1] + 3) and torch.equal(out, rerun) and torch.equal(out[:, :8], tokens)
    assert int(out[0, 8]) == int(model(tokens)[0, -1].argmax())


def test_every_loader_returns_eval_mode(tmp_path):
    from workbench.checkpoint import load_from_bytes

    directory = ROOT / "workbench" / "checkpoints" / "toy-delta"
    model = load_from_bytes((directory / "config.json").read_text(), (directory / "model.safetensors").read_bytes())
    assert not model.training
    fresh = HookedFastWeightLM(ModelConfig(d_vocab=16))
    assert fresh.training  # a model built to be trained starts in training mode, as an nn.Module does


def test_residual_decompositions_sum_exactly(model):
    tokens = some_tokens(model)
    logits, cache = model.run_with_cache(tokens)
    n = model.cfg.n_layers
    for layer in range(n + 1):
        target = cache["resid_pre", layer] if layer < n else cache["resid_post", n - 1]
        close(cache.decompose_resid(layer).sum(0), target)
        close(cache.get_full_resid_decomposition(layer).sum(0), target)
        close(cache.get_full_resid_decomposition(layer, expand_neurons=False).sum(0), target)
        close(cache.stack_head_results(layer, incl_remainder=True).sum(0), target)
    for layer in range(n if not model.cfg.attn_only else 0):
        close(cache.decompose_resid(layer, mlp_input=True).sum(0), cache["resid_mid", layer])
        close(cache.get_full_resid_decomposition(layer, mlp_input=True).sum(0), cache["resid_mid", layer])
    heads, labels = cache.stack_head_results(return_labels=True)
    assert heads.shape[0] == len(labels) == n * model.cfg.n_heads and labels[0] == "L0H0"
    for layer in range(n):  # each layer's heads, bias and (FWM's LSTM path) other part make its output
        other = cache.attn_other(layer)
        close(cache["result", layer].sum(-2) + cache.attn_bias(layer) + (0 if other is None else other),
              cache["attn_out", layer])
    resid, labels = cache.accumulated_resid(return_labels=True, apply_ln=True)
    assert labels[-1] == "final_post" and len(labels) == n + 1
    close(model.unembed(resid[-1]), logits)  # the logit lens' last row is the model's logits
    if not model.cfg.attn_only:  # every neuron's write, plus the MLPs' biases, is their output
        neurons = cache.stack_neuron_results(n, pos_slice=-1)
        assert neurons.shape[0] == n * model.cfg.d_mlp
        close(neurons.sum(0) + sum(model.blocks[l].mlp.b_out for l in range(n)),
              sum(cache["mlp_out", l][:, -1] for l in range(n)))


def test_direct_logit_attribution_sums_to_the_logit_difference(model):
    tokens = some_tokens(model, seed=1)
    logits, cache = model.run_with_cache(tokens)
    final = logits[:, -1]
    answer, wrong = final.argmax(-1), final.argsort(-1)[:, -2]  # [batch]: the top two predictions
    logit_diff = final.gather(-1, answer[:, None])[:, 0] - final.gather(-1, wrong[:, None])[:, 0]
    for stack in (cache.decompose_resid(pos_slice=-1),
                  cache.get_full_resid_decomposition(pos_slice=-1, expand_neurons=False),
                  cache.get_full_resid_decomposition(pos_slice=-1),
                  cache.stack_head_results(pos_slice=-1, incl_remainder=True)):
        attrs = cache.logit_attrs(stack, answer, incorrect_tokens=wrong, pos_slice=-1)  # [component, batch]
        assert attrs.shape == (stack.shape[0], tokens.shape[0])
        close(attrs.sum(0) + model.logit_offset(answer, wrong), logit_diff)
    attrs = cache.logit_attrs(cache.decompose_resid(pos_slice=-1), answer, pos_slice=-1)  # one logit, no difference
    close(attrs.sum(0) + model.logit_offset(answer), final.gather(-1, answer[:, None])[:, 0])
    token = int(answer[0])  # the same through project_output_onto, for one token's direction
    direction = model.tokens_to_residual_directions(token)  # [d_model]
    projected = cache.get_full_resid_decomposition(pos_slice=-1, apply_ln=True, project_output_onto=direction)
    close(projected.sum(0) + model.logit_offset(token), final[:, token])
    if not model.cfg.attn_only:
        n = model.cfg.n_layers
        folded = cache.stack_neuron_results(n, pos_slice=-1, apply_ln=True, project_output_onto=direction)
        plain = cache.apply_ln_to_stack(cache.stack_neuron_results(n, pos_slice=-1), pos_slice=-1) @ direction
        close(folded, plain)


def _logit_diff_metric(clean_logits):
    answer = clean_logits[:, -1].argmax(-1)
    wrong = clean_logits[:, -1].argsort(-1)[:, -2]

    def metric(logits):
        final = logits[:, -1]
        return (final.gather(-1, answer[:, None]) - final.gather(-1, wrong[:, None])).mean()
    return metric


def test_patching_functions_match_a_hand_written_loop(model):
    clean = some_tokens(model, seed=2, pos=5)
    corrupted = clean.clone()
    corrupted[:, 1::2] = some_tokens(model, seed=3, pos=5)[:, 1::2]
    clean_logits, clean_cache = model.run_with_cache(clean)
    metric = _logit_diff_metric(clean_logits)
    n, n_pos = model.cfg.n_layers, clean.shape[1]

    resid = patching.get_act_patch_resid_pre(model, corrupted, clean_cache, metric)
    by_hand = torch.zeros(n, n_pos)
    for layer in range(n):
        for pos in range(n_pos):
            def patch(act, hook, pos=pos):
                act[:, pos] = clean_cache[hook.name][:, pos]
                return act
            logits = model.run_with_hooks(corrupted, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", patch)])
            by_hand[layer, pos] = metric(logits)
    assert resid.shape == (n, n_pos)
    torch.testing.assert_close(resid, by_hand, rtol=1e-5, atol=1e-5)

    heads = patching.get_act_patch_attn_head_out_all_pos(model, corrupted, clean_cache, metric)
    by_hand = torch.zeros(n, model.cfg.n_heads)
    for layer in range(n):
        for head in range(model.cfg.n_heads):
            def patch_z(act, hook, head=head):
                act[:, :, head] = clean_cache[hook.name][:, :, head]
                return act
            logits = model.run_with_hooks(corrupted, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", patch_z)])
            by_hand[layer, head] = metric(logits)
    torch.testing.assert_close(heads, by_hand, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(resid, resid[:, :1].expand_as(resid)), "the patches should matter somewhere"


def test_patching_refuses_a_model_in_training_mode(model):
    tokens = some_tokens(model, pos=4)
    logits, cache = model.run_with_cache(tokens)
    model.train()
    with pytest.raises(ValueError, match="evaluation"):
        patching.get_act_patch_resid_pre(model, tokens, cache, _logit_diff_metric(logits))


def test_fast_weight_cache_helpers_are_exact(model):
    tokens = some_tokens(model, seed=4)
    _, cache = model.run_with_cache(tokens)
    assert cache.ssm_layers() == model.fast_weight_layers
    for layer in model.fast_weight_layers:
        torch.testing.assert_close(cache.compute_ssm_state(layer, time_step=5), model.fast_weights(tokens, layer, [5]))
        try:
            expected = model.effective_attention(tokens, layer)
        except NotDefinedForMixer:
            with pytest.raises(NotDefinedForMixer):
                cache.compute_ssm_effective_attention(layer)
        else:
            torch.testing.assert_close(cache.compute_ssm_effective_attention(layer), expected)


def test_attention_pattern_and_circuits_exist_only_where_defined(model):
    tokens = some_tokens(model, seed=5)
    _, cache = model.run_with_cache(tokens)
    assert model.W_E is model.embed.W_E and model.W_U is model.unembed.W_U and model.b_U is model.unembed.b_U
    if "blocks.0.attn.hook_pattern" in model.hook_dict:
        assert torch.equal(cache["pattern", 0], cache["blocks.0.attn.hook_pattern"])
        return
    with pytest.raises(KeyError, match="effective_attention"):
        cache["pattern", 0]
    defined = []
    for layer in range(model.cfg.n_layers):
        try:
            model.mixer(layer).qk_weights()
            defined.append(True)
        except NotDefinedForMixer:
            defined.append(False)
    if all(defined):
        assert model.QK.shape[:2] == (model.cfg.n_layers, model.cfg.n_heads)
    else:
        with pytest.raises(NotDefinedForMixer, match="no QK circuit"):
            model.QK


def test_linear_attention_qk_circuit_is_its_effective_attention():
    model = load(ROOT / "workbench" / "checkpoints" / "mqar-linear-d64")
    tokens = some_tokens(model, seed=9)
    _, cache = model.run_with_cache(tokens)
    for layer in range(model.cfg.n_layers):
        x = cache["normalized", layer, "ln1"]
        a = torch.einsum("bqm,hmn,bkn->bhqk", x, model.QK[layer].AB, x).tril() * model.mixer(layer).scale
        close(a, model.effective_attention(tokens, layer), rel=1e-4)


# ---------------------------------------------------------------------- circuits and head_detector (softmax layers)
def test_qk_and_ov_circuits_reproduce_softmax_scores_and_head_results():
    model = load(ROOT / "workbench" / "checkpoints" / "mqar-softmax-d64")
    tokens = some_tokens(model, seed=6)
    _, cache = model.run_with_cache(tokens)
    QK, OV = model.QK, model.OV
    n, h = model.cfg.n_layers, model.cfg.n_heads
    assert isinstance(QK, FactoredMatrix) and QK.shape == OV.shape == (n, h, model.cfg.d_model, model.cfg.d_model)
    assert model.W_Q.shape == (n, h, model.cfg.d_model, model.cfg.d_head) and model.W_O.shape[-1] == model.cfg.d_model
    cache.compute_head_results()
    for layer in range(n):
        x = cache["normalized", layer, "ln1"]  # [batch, pos, d_model]
        scores = torch.einsum("bqm,hmn,bkn->bhqk", x, QK[layer].AB, x) / model.cfg.d_head ** 0.5
        mask = torch.ones(x.shape[1], x.shape[1], dtype=torch.bool).tril()
        close(scores[..., mask], cache["attn_scores", layer][..., mask])
        result = torch.einsum("bhqk,bkm,hmn->bqhn", cache["pattern", layer], x, OV[layer].AB)
        close(result, cache["result", layer])


def test_circuits_refuse_with_the_reason():
    model = load(ROOT / "workbench" / "checkpoints" / "toy-delta")
    with pytest.raises(NotDefinedForMixer, match="short convolution.*effective_attention|effective attention"):
        model.QK
    with pytest.raises(NotDefinedForMixer, match="RMS-normalised"):
        model.OV
    srwm = load(ROOT / "workbench" / "checkpoints" / "toy-srwm")
    with pytest.raises(NotDefinedForMixer, match="layer 0: the SRWM mixer has no QK circuit"):
        srwm.W_Q
    rotary = HookedFastWeightLM(ModelConfig(d_vocab=16, n_layers=1, mixer={"kind": "softmax", "rotary_base": 1e4}))
    with pytest.raises(NotDefinedForMixer, match="rotary"):
        rotary.QK
    assert rotary.OV.shape == (1, 4, 64, 64)


class _Bytes:
    """A byte tokenizer for head_detector's ``model.to_tokens(text)``."""

    def encode(self, text: str) -> list[int]:
        return list(text.encode())

    def decode(self, ids) -> str:
        return bytes(ids).decode(errors="replace")


def test_head_detector_on_softmax_layers_and_a_clear_error_elsewhere():
    model = load(ROOT / "workbench" / "checkpoints" / "mqar-softmax-d64")
    model.tokenizer = _Bytes()
    text = "abcdefgabcdefg"
    scores = head_detector.detect_head(model, text, "previous_token_head")
    _, cache = model.run_with_cache(model.to_tokens(text), remove_batch_dim=True)
    pattern = cache["pattern", 1][0]  # [query, key] of head 0
    expected = pattern.diagonal(-1).sum() / pattern.sum()
    assert scores.shape == (model.cfg.n_layers, model.cfg.n_heads)
    assert abs(float(scores[1, 0]) - float(expected)) < 1e-5
    delta = load(ROOT / "workbench" / "checkpoints" / "toy-delta")
    delta.tokenizer = _Bytes()
    with pytest.raises(KeyError, match="model.effective_attention"):
        head_detector.detect_head(delta, "012012", "previous_token_head")


# ---------------------------------------------------------------------- block styles on small random models
BASE = dict(d_vocab=32, d_model=32, n_heads=2, d_head=16, n_layers=2, d_mlp=64, n_ctx=32)
STYLES = {
    "outlier_protected": dict(block="outlier_protected"),
    "post_norm": dict(norm="rmsnorm", post_norm_layers=(1,)),
    "post_norm_layernorm": dict(post_norm_layers=(0,)),
    "no_norm": dict(norm="none"),
    "attn_only": dict(mlp="none"),
    "moe": dict(mlp="swiglu", moe=MoEConfig(n_experts=4, top_k=2, d_expert=16)),
}


@pytest.mark.parametrize("mixer", names())
@pytest.mark.parametrize("style", list(STYLES))
def test_every_block_style_decomposes_exactly(mixer, style):
    try:
        cfg = ModelConfig(mixer=mixer, **BASE, **STYLES[style])
    except ValueError as e:  # e.g. a mixer without the Outlier Protected block's QK-norm
        pytest.skip(f"ModelConfig refuses it: {e}")
    model = HookedFastWeightLM(cfg).eval()
    tokens = some_tokens(model, seed=7, pos=6)
    logits, cache = model.run_with_cache(tokens)
    n, expand = model.cfg.n_layers, style != "moe"
    for layer in range(n + 1):
        target = cache["resid_pre", layer] if layer < n else cache["resid_post", n - 1]
        close(cache.decompose_resid(layer).sum(0), target)
        close(cache.get_full_resid_decomposition(layer, expand_neurons=expand).sum(0), target)
    stack = cache.get_full_resid_decomposition(pos_slice=-1, expand_neurons=expand)
    answer, wrong = logits[:, -1].argmax(-1), logits[:, -1].argmin(-1)
    diff = logits[:, -1].gather(-1, answer[:, None])[:, 0] - logits[:, -1].gather(-1, wrong[:, None])[:, 0]
    close(cache.logit_attrs(stack, answer, wrong, pos_slice=-1).sum(0) + model.logit_offset(answer, wrong), diff)
    if style == "moe":
        with pytest.raises(NotDefinedForMixer, match="mixture of experts"):
            cache.get_full_resid_decomposition()
    if style in ("outlier_protected", "no_norm"):  # nothing normalises a block's input: the stack is what it reads
        stack = cache.decompose_resid(1)
        assert torch.equal(cache.apply_ln_to_stack(stack, 1), stack)


def test_post_norm_head_results_are_the_frozen_scale_shares():
    model = HookedFastWeightLM(ModelConfig(mixer="softmax", **BASE, post_norm_layers=(0,))).eval()
    _, cache = model.run_with_cache(some_tokens(model, seed=8))
    cache.compute_head_results()
    norm = model.blocks[0].ln_attn_out
    z, W_O = cache["z", 0], model.blocks[0].attn.W_O
    raw = torch.einsum("bphd,hdm->bphm", z, W_O)
    expected = (raw - raw.mean(-1, keepdim=True)) / cache["blocks.0.ln_attn_out.hook_scale"][..., None, :] * norm.w
    close(cache["result", 0], expected)
    with pytest.raises(NotDefinedForMixer, match="post_norm_layers"):
        model.accumulated_bias(1)


# ---------------------------------------------------------------------- the config names TransformerLens reads
def test_model_cfg_answers_transformer_lens_names_and_stays_our_config():
    cfg = ModelConfig(mixer="delta", **BASE)
    model = HookedFastWeightLM(cfg)
    assert model.cfg == cfg and model.cfg is not cfg and model.cfg.to_dict() == cfg.to_dict()
    assert (model.cfg.normalization_type, model.cfg.attn_only, model.cfg.act_fn) == ("LN", False, "gelu")
    assert model.cfg.positional_embedding_type == "standard" and model.cfg.n_key_value_heads is None
    assert model.cfg.device == torch.device("cpu") and model.cfg.dtype == torch.float32 and cfg.device is None
    model.to(torch.float64)
    assert model.cfg.dtype == torch.float64 and cfg.dtype is None
    assert ModelConfig(mixer="delta", **{**BASE, "norm": "none", "mlp": "none"}).normalization_type is None
    assert HookedFastWeightLM(model.cfg).cfg == cfg


def test_the_other_patching_sweeps_and_the_logit_lens_run_or_say_why():
    delta, softmax = (load(ROOT / "workbench" / "checkpoints" / name) for name in ("toy-delta", "mqar-softmax-d64"))
    for model in (delta, softmax):
        tokens = some_tokens(model, seed=10, pos=3)
        logits, cache = model.run_with_cache(tokens)
        metric = _logit_diff_metric(logits)
        lens = cache.logit_lens()  # TransformerLens checks that its last row reproduces the model's logits
        assert lens.labels[-1] == "final_post"
        if model is delta:
            assert patching.get_act_patch_block_every(model, tokens.flip(-1), cache, metric).shape == (3, 2, 3)
            with pytest.raises(KeyError, match="no attention pattern"):
                patching.get_act_patch_attn_head_all_pos_every(model, tokens.flip(-1), cache, metric)
        else:
            every = patching.get_act_patch_attn_head_by_pos_every(model, tokens.flip(-1), cache, metric)
            assert every.shape == (5, model.cfg.n_layers, 3, model.cfg.n_heads)
            with pytest.raises(KeyError, match="no MLPs"):
                patching.get_act_patch_block_every(model, tokens.flip(-1), cache, metric)
        _, corrupted_cache = model.run_with_cache(tokens.flip(-1))
        with pytest.raises(NotDefinedForMixer, match="per-head copy"):
            patching.get_act_patch_direct_path(model, tokens.flip(-1), cache, corrupted_cache, metric, 0, 0)
