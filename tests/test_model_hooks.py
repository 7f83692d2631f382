"""Every documented hook fires with its documented shape; hooks are scoped; inputs are validated."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "hooks.md"

VARIANTS = {
    "softmax": dict(mixer="softmax"),
    "linear": dict(mixer="linear"),
    "linear_dpfp2": dict(mixer="linear", feature_map="dpfp", dpfp_nu=2, sum_norm=True),
    "linear_favor": dict(mixer="linear", feature_map="favor", favor_features=12),
    "delta": dict(mixer="delta"),
    "delta_noconv_rms_swiglu": dict(mixer="delta", conv_size=0, norm="rmsnorm", mlp="swiglu"),
    "gated_delta": dict(mixer="gated_delta"),
    "gated_delta_bare": dict(mixer="gated_delta", norm="none", mlp="none", positional="none", output_gate=False),
    "softmax_outlier_protected": dict(mixer="softmax", block="outlier_protected"),
    "softmax_rotary_window_bias": dict(mixer={"kind": "softmax", "rotary_base": 500.0, "window": 5, "qkv_bias": True},
                                       positional="none"),
    "linear_outlier_protected_rms": dict(mixer="linear", feature_map="elu1", block="outlier_protected", norm="rmsnorm"),
    "delta_outlier_protected_nonorm": dict(mixer="delta", block="outlier_protected", norm="none"),
    "softmax_gated_partial_rotary_qk_norm": dict(  # Qwen3.5's attention
        mixer={"kind": "softmax", "rotary_base": 1e4, "rotary_dim": 4, "qk_rmsnorm": "head", "output_gate": True},
        norm="rmsnorm", mlp="swiglu", positional="none"),
    "softmax_post_norm_qk_norm_all": dict(mixer={"kind": "softmax", "qk_rmsnorm": "all"}, norm="rmsnorm",
                                          post_norm_layers=[1]),  # OLMo-hybrid's attention layers
    "mamba2_groups_no_mlp": dict(mixer={"kind": "mamba2", "n_groups": 1}, norm="rmsnorm", mlp="none"),
    "gla_conv_relu": dict(mixer={"kind": "gla", "conv_size": 3, "feature_map": "relu"}),
    "kda_sigmoid_gate": dict(mixer={"kind": "kda", "output_gate": True, "gate_activation": "sigmoid"}),
    "mla_sigmoid_grouped_moe": dict(  # Kimi Linear's attention and MLPs
        mixer={"kind": "mla", "kv_lora_rank": 12, "q_lora_rank": 6}, norm="rmsnorm", mlp="swiglu", positional="none",
        moe=dict(n_experts=6, top_k=2, d_expert=12, d_shared=48, sigmoid_scores=True, n_group=3, topk_group=2,
                 score_bias=True, shared_gate=False, routed_scaling_factor=2.5)),
    "gated_delta_moe": dict(mixer="gated_delta", norm="rmsnorm", mlp="swiglu", moe=dict(
        n_experts=5, top_k=2, d_expert=12, d_shared=48, dense_layers=[0])),  # Qwen3-Next's MLPs (layer 0 dense)
    "mamba2_one_branch_blocks_relu2_moe": dict(  # Nemotron-H's blocks: mixer-only, MLP-only (dense, experts), both
        mixer={"kind": "mamba2", "d_head_v": 0}, n_layers=4, norm="rmsnorm", mlp="relu2", positional="none",
        block_kinds=["mixer", "mlp", "mlp", "mixer_mlp"], moe=dict(
            n_experts=4, top_k=2, d_expert=12, d_shared=48, sigmoid_scores=True, score_bias=True, shared_gate=False,
            dense_layers=[1, 3])),
    "rec_delta": dict(mixer="rec_delta"),
    "rec_delta_bare": dict(mixer="rec_delta", norm="none", mlp="none", positional="none"),
    "delta_rnn": dict(mixer="delta_rnn"),
    "delta_lstm": dict(mixer="delta_lstm"),
    "fwm": dict(mixer={"kind": "fwm", "n_reads": 2}),
    "fwm_one_read_bare": dict(mixer={"kind": "fwm", "n_reads": 1, "residual": False}, norm="none", mlp="none"),
    "srwm": dict(mixer="srwm"),
    **{f"{kind}_conv_output_norm": dict(mixer={"kind": kind, "conv_size": 3, "output_norm": True})
       for kind in ("rec_delta", "delta_rnn", "delta_lstm", "srwm", "fwm")},
    "srwm_identity_outlier_protected": dict(mixer={"kind": "srwm", "input_softmax": False}, block="outlier_protected",
                                            norm="none", positional="none"),
}


def doc_table() -> list[tuple[str, str, str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| `([^`]+)` \| ([^|]+) \| `(\[[^`]+\])` \|", line)
        if m:
            rows.append((m.group(1), m.group(2).strip(), m.group(3)))
    return rows


def expected_hooks(cfg: ModelConfig, exposed: bool = False) -> dict[str, list[str]]:
    """Hook name -> documented axes, for this config, by reading the row's applicability note."""
    out = {}
    for name, who, shape in doc_table():
        mixers = who.split(" (")[0]
        if mixers != "all" and cfg.mixer.kind not in [m.strip() for m in mixers.split(",")]:
            continue
        cond = who.split(" (", 1)[1] if " (" in who else ""
        if "learned positions" in cond and cfg.positional != "learned":
            continue
        if "with an MLP" in cond and cfg.mlp == "none":
            continue
        if "with a norm" in cond and cfg.norm == "none":
            continue
        if "pre-norm block" in cond and cfg.block != "pre_norm":
            continue
        if "Outlier Protected block" in cond and cfg.block != "outlier_protected":
            continue
        if "SwiGLU" in cond and cfg.mlp != "swiglu":
            continue
        if "expose_states" in cond and not exposed:
            continue
        if "rotary_base" in cond and not getattr(cfg.mixer, "rotary_base", 0):
            continue
        if "n_kv_heads" in cond and not getattr(cfg.mixer, "n_kv_heads", 0):
            continue
        if "output_gate" in cond and not getattr(cfg.mixer, "output_gate", False):
            continue
        if "conv_size" in cond and not getattr(cfg.mixer, "conv_size", 0):
            continue
        if "with `output_norm`" in cond and not getattr(cfg.mixer, "output_norm", False):
            continue
        layers = range(cfg.n_layers)
        moe_layers = [i for i in layers if cfg.moe_at(i) is not None]
        if "MoE layers" in cond:
            layers = moe_layers if cfg.moe and ("shared expert" not in cond or cfg.moe.d_shared) else []
            if "shared_gate" in cond and not (cfg.moe and cfg.moe.shared_gate):
                layers = []
        elif name.startswith("blocks.{i}.mlp."):  # the dense MLP's hooks
            layers = [i for i in layers if i not in moe_layers]
        if "post-norm layers" in cond:
            layers = cfg.post_norm_layers
        elif "pre-norm block" in cond:
            layers = [i for i in layers if i not in cfg.post_norm_layers]
        # a block holds the branches its kind says (cfg.block_kinds): mixer hooks in blocks with a mixer, MLP hooks
        # in blocks with an MLP
        if "with a mixer" in cond or name.startswith(("blocks.{i}.attn.", "blocks.{i}.ln1.", "blocks.{i}.ln_attn_out.")):
            layers = [i for i in layers if cfg.has_mixer(i)]
        if "with an MLP" in cond:
            layers = [i for i in layers if cfg.has_mlp(i)]
        axes = [a.strip() for a in shape.strip("[]").split(",")]
        names = [name.replace("{i}", str(i)) for i in layers] if "{i}" in name else [name]
        for n in names:
            out[n] = axes
    return out


def axis_size(cfg: ModelConfig, axis: str, batch: int, pos: int) -> int:
    return {
        "batch": batch, "pos": pos, "head": cfg.n_heads, "d_model": cfg.d_model, "d_head": cfg.d_head,
        "d_k": cfg.mixer.d_k(cfg.d_head), "d_v": cfg.d_head, "d_mlp": cfg.d_mlp, "vocab": cfg.d_vocab, "1": 1,
        "n_positions": 2,
        "gate": 3,  # the Delta LSTM's gates
        "d_latent": getattr(cfg.mixer, "kv_lora_rank", 0),
        "expert": cfg.moe.n_experts if cfg.moe else 0, "top_k": cfg.moe.top_k if cfg.moe else 0,
        "d_s": cfg.d_head, "d_r": cfg.d_head, "d_t": cfg.d_head, "hop": getattr(cfg.mixer, "n_reads", 1),
        "d_out": 3 * cfg.d_head + 4,  # the srwm's W output: y, q, k (d_head each) and 4 β logits
    }[axis]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_every_documented_hook_fires_with_its_shape(variant):
    cfg = ModelConfig.from_dict(dict(d_vocab=37, d_model=32, n_heads=2, d_head=8, d_mlp=48, chunk_size=16, **VARIANTS[variant]))
    model = HookedFastWeightLM(cfg)
    tokens = torch.randint(0, 37, (2, 21), generator=torch.Generator().manual_seed(0))
    logits, cache = model.run_with_cache(tokens)
    assert logits.shape == (2, 21, 37)
    expected = expected_hooks(cfg)
    assert set(cache.keys()) == set(expected), (
        f"undocumented: {set(cache.keys()) - set(expected)}; documented but silent: {set(expected) - set(cache.keys())}"
    )
    for name, axes in expected.items():
        want = tuple(axis_size(cfg, a, 2, 21) for a in axes)
        assert tuple(cache[name].shape) == want, (name, tuple(cache[name].shape), want)
    # caching changed nothing
    assert torch.equal(logits, model(tokens))
    if model.fast_weight_layers:  # inside expose_states the state hook fires too, with its documented shape
        with model.expose_states([3, 17]):
            _, cache = model.run_with_cache(tokens)
        expected = expected_hooks(cfg, exposed=True)
        assert set(cache.keys()) == set(expected)
        for name, axes in expected.items():
            want = [axis_size(cfg, a, 2, 21) for a in axes]
            if name.endswith("hook_state"):  # a state row is as wide as the mixer says (+1: the sum normaliser)
                want[-1] = model.blocks[int(name.split(".")[1])].attn.d_v
            assert tuple(cache[name].shape) == tuple(want), name


def test_hooks_do_not_outlive_the_run():
    model = HookedFastWeightLM(ModelConfig(d_vocab=11, d_model=16, n_heads=2, d_head=8, d_mlp=16))
    tokens = torch.randint(0, 11, (1, 9))
    model.run_with_cache(tokens)
    model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_v", lambda x, hook: x * 0)])
    with model.hooks(fwd_hooks=[("blocks.1.attn.hook_k", lambda x, hook: x * 2)]):
        pass
    assert all(not hp.fwd_hooks and not hp.bwd_hooks for hp in model.hook_dict.values())


def test_names_filter_and_backward_hooks():
    model = HookedFastWeightLM(ModelConfig(d_vocab=11, d_model=16, n_heads=2, d_head=8, d_mlp=16))
    tokens = torch.randint(0, 11, (1, 9))
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_delta"))
    assert sorted(cache.keys()) == ["blocks.0.attn.hook_delta", "blocks.1.attn.hook_delta"]
    grads = {}
    def save_grad(g, hook):
        grads[hook.name] = g.detach()
    with model.hooks(bwd_hooks=[("blocks.0.attn.hook_beta", save_grad)]):
        model(tokens, return_type="loss").backward()
    assert grads["blocks.0.attn.hook_beta"].shape == (1, 9, 2)


@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.tensor([[1.0, 2.0]]), "integer ids"),
        (torch.tensor([[1, 11]]), "outside the vocabulary"),
        (torch.tensor([[-1, 2]]), "outside the vocabulary"),
        (torch.zeros(1, 0, dtype=torch.long), "empty"),
        (torch.zeros(1, 2, 3, dtype=torch.long), "shape"),
        (torch.zeros(1, 65, dtype=torch.long), "n_ctx"),
    ],
)
def test_bad_tokens_raise_clear_errors(bad, message):
    model = HookedFastWeightLM(ModelConfig(d_vocab=11, d_model=16, n_heads=2, d_head=8, d_mlp=16, n_ctx=64))
    with pytest.raises(ValueError, match=message):
        model(bad)


def test_config_round_trip_and_errors():
    cfg = ModelConfig.from_dict(dict(d_vocab=11, mixer="linear", feature_map="dpfp", dpfp_nu=3))
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({**cfg.to_dict(), "n_layer": 3})
    with pytest.raises(ValueError, match="unknown mixer .mamba.; known mixers"):
        ModelConfig(d_vocab=11, mixer="mamba")
    with pytest.raises(ValueError, match="d_model must be a positive int"):
        ModelConfig(d_vocab=11, d_model=0)
    with pytest.raises(ValueError, match="not valid JSON"):
        ModelConfig.from_json("{")


def test_every_hook_points_shape_comment_agrees_with_docs_hooks_md():
    """Each ``self.hook_x = HookPoint()  # [shape]`` of the language model's modules states a shape that the
    table of docs/hooks.md gives a hook of that name (one axis vocabulary in code and docs)."""
    root = Path(__file__).resolve().parents[1] / "workbench"
    files = [root / "model.py", *sorted((root / "components").glob("*.py")), *sorted((root / "mixers").glob("*.py"))]
    doc: dict[str, set[str]] = {}
    for name, _, shape in doc_table():
        doc.setdefault(name.rsplit(".", 1)[-1], set()).add(shape)
    seen = 0
    for f in files:
        for n, line in enumerate(f.read_text().splitlines(), 1):
            m = re.match(r"\s*self\.(hook_\w+) = HookPoint\(\)(?:\s*#\s*(\[[^\]]*\]))?", line)
            if not m:
                continue
            seen += 1
            where = f"{f.relative_to(root.parent)}:{n}"
            assert m.group(2), f"{where}: {m.group(1)} has no shape comment"
            assert m.group(1) in doc, f"{where}: {m.group(1)} is not in docs/hooks.md"
            assert m.group(2) in doc[m.group(1)], f"{where}: {m.group(1)} {m.group(2)}; docs/hooks.md: {doc[m.group(1)]}"
    assert seen >= 30
