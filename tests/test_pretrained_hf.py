"""workbench.from_pretrained on transformers' Gated DeltaNet hybrids (Qwen3.5, OLMo-hybrid, Qwen3-Next), Kimi
Linear, Mamba-2 and Nemotron-H, against transformers.

tests/hf_reference.py builds tiny random-weight models with transformers' own config and model classes and saves
them with ``save_pretrained``; each is opened with ``from_pretrained`` and its logits, every layer's output and the
recurrent states of transformers' cache are compared to ≤ 1e-4 relative error in fp32. Then: the round trip in our
format, the tokenizer, refused options, and the fast-weight analyses on an imported model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import workbench
from hf_reference import BATCH, CASES, build, errors, reference, rel, tokens

transformers = pytest.importorskip("transformers")
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hf_runs(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    """Every case saved by transformers; name → (directory, transformers' outputs)."""
    if not hasattr(transformers, "OlmoHybridConfig") or not hasattr(transformers, "Qwen3_5TextConfig"):
        pytest.skip("this transformers version lacks Qwen3.5 or OLMo-hybrid")
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("hf")
    ids = tokens()
    out = {}
    for i, name in enumerate(CASES):
        model = build(name, seed=i)
        model.save_pretrained(root / name, safe_serialization=True)
        out[name] = (root / name, reference(model, ids))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_logits_layers_and_states_match_transformers(hf_runs, name):
    directory, ref = hf_runs[name]
    err = errors(workbench.from_pretrained(directory), ref, tokens())
    assert err["logits"] <= 1e-4 and err["layers"] <= 1e-4 and err["states"] <= 1e-4, err


def test_what_each_architecture_becomes(hf_runs):
    qwen = workbench.from_pretrained(hf_runs["qwen3_5_text"][0])
    assert [m.kind for m in qwen.cfg.layer_mixers] == ["gated_delta", "softmax", "gated_delta"]
    gdn, attn = qwen.cfg.layer_mixers[0], qwen.cfg.layer_mixers[1]
    assert (gdn.n_qk_heads, gdn.d_head_v, gdn.qk_norm, gdn.output_gate) == (2, 16, "l2_rsqrt", True)
    assert (attn.qk_rmsnorm, attn.output_gate, attn.rotary_dim, attn.n_kv_heads, attn.n_heads) == ("head", True, 4, 1, 2)
    assert qwen.cfg.post_norm_layers == ()
    olmo = workbench.from_pretrained(hf_runs["olmo_hybrid"][0])
    assert olmo.cfg.post_norm_layers == (1,) and olmo.cfg.layer_mixers[1].qk_rmsnorm == "all"
    assert olmo.cfg.layer_mixers[0].allow_neg_eigval and olmo.cfg.layer_mixers[0].output_norm_eps == 1e-5
    nope = workbench.from_pretrained(hf_runs["olmo_hybrid_nope_posneg_tied"][0])
    assert nope.cfg.layer_mixers[2].rotary_base == 0 and not nope.cfg.layer_mixers[0].allow_neg_eigval
    nemo = workbench.from_pretrained(hf_runs["nemotron_h"][0])
    assert nemo.cfg.block_kinds == ("mixer", "mlp", "mixer", "mlp", "mixer", "mlp") and nemo.cfg.mlp == "relu2"
    assert [m and m.kind for m in nemo.cfg.layer_mixers] == ["mamba2", None, "softmax", None, "mamba2", None]
    attn, mamba = nemo.cfg.layer_mixers[2], nemo.cfg.layer_mixers[0]
    assert (attn.rotary_base, attn.n_heads, attn.n_kv_heads, attn.d_head) == (0, 4, 2, 8)
    assert (mamba.d_head_v, mamba.n_groups, mamba.dt_min, mamba.dt_max) == (8, 2, 0.001, 0.0)
    assert nemo.cfg.moe_at(3) is not None and nemo.cfg.moe_at(1) is None and nemo.cfg.moe.n_group == 2
    assert nemo.mixer_layers == [0, 2, 4] and nemo.mlp_layers == [1, 3, 5] and nemo.fast_weight_layers == [0, 4]
    with pytest.raises(ValueError, match="MLP-only block"):
        nemo.mixer(1)


def test_the_vision_tower_is_left_out(hf_runs):
    directory = hf_runs["qwen3_5_multimodal"][0]
    names = load_file(str(directory / "model.safetensors"))
    assert any(n.startswith("model.visual.") for n in names)
    model = workbench.from_pretrained(directory)
    assert sum(p.numel() for p in model.parameters()) < sum(t.numel() for t in names.values())


def _write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"<|endoftext|>": 0, "the": 1, "Ġcat": 2, "Ġsat": 3, "[UNK]": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    path.write_text(tok.to_str())


def test_round_trip_and_tokenizer(hf_runs, tmp_path):
    """Our format keeps every new option (gated softmax, post-norm layers, experts, KDA, MLA) bit-identically."""
    for name in ("qwen3_5_text", "olmo_hybrid", "qwen3_next", "kimi_linear", "mamba2", "nemotron_h"):
        src = tmp_path / name
        shutil.copytree(hf_runs[name][0], src)
        _write_tokenizer(src / "tokenizer.json")
        model = workbench.from_pretrained(src)
        assert model.to_tokens("the cat sat").tolist() == [[1, 2, 3]]
        assert model.to_tokens("the cat", prepend_bos=True).tolist() == [[0, 1, 2]]  # bos_token_id = 0
        assert model.to_str_tokens(torch.tensor([1, 3])) == ["the", " sat"]
        workbench.save(model, tmp_path / f"ours_{name}")
        again = workbench.load(tmp_path / f"ours_{name}")
        assert again.cfg == model.cfg
        for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
            assert k == k2 and torch.equal(a, b), k
        ids = tokens()
        assert torch.equal(model(ids), again(ids))
        assert again.to_string([1, 2]) == "the cat"


def _edited(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("name, changes, match", [
    ("qwen3_5_text", dict(hidden_act="gelu"), "hidden_act"),
    ("qwen3_5_text", dict(attention_bias=True), "attention_bias"),
    ("qwen3_5_text", dict(rope_parameters=dict(rope_type="yarn", rope_theta=1e4, factor=4.0)), "rope"),
    ("qwen3_5_text", dict(layer_types=["linear_attention"] * 2), "layer_types"),
    ("qwen3_5_text", dict(some_new_option=1), "some_new_option"),
    ("olmo_hybrid", dict(linear_allow_neg_eigval="yes"), "linear_allow_neg_eigval"),
    ("olmo_hybrid", dict(rope_scaling=dict(rope_type="linear", factor=2.0), rope_parameters=None), "rope"),
    ("mamba2", dict(hidden_act="gelu"), "hidden_act"),
    ("mamba2", dict(n_groups=3), "n_groups"),
    ("mamba2", dict(time_step_limit=[0.5, 0.1]), "time_step_limit"),
    ("mamba2", dict(some_new_option=1), "some_new_option"),
    ("nemotron_h", dict(mlp_hidden_act="gelu"), "mlp_hidden_act"),
    ("nemotron_h", dict(mamba_hidden_act="gelu"), "mamba_hidden_act"),
    ("nemotron_h", dict(moe_latent_size=8), "moe_latent_size"),
    ("nemotron_h", dict(sliding_window=16), "sliding_window"),
    ("nemotron_h", dict(layers_block_type=["linear_attention", "mlp", "sparse_attention", "moe", "mlp", "mlp"]),
     "sparse_attention"),
    ("nemotron_h", dict(num_hidden_layers=5), "num_hidden_layers"),
    ("nemotron_h", dict(n_groups=3), "n_groups"),
    ("nemotron_h", dict(mamba_n_groups=1), "mamba_n_groups"),
    ("nemotron_h", dict(some_new_option=1), "some_new_option"),
])
def test_options_we_do_not_reproduce_raise(hf_runs, tmp_path, name, changes, match):
    with pytest.raises(ValueError, match=match):
        workbench.from_pretrained(_edited(hf_runs[name][0], tmp_path / "bad", **changes))


def test_transformers_names_and_olmo_core_names_load_alike(hf_runs, tmp_path):
    """OLMo-hybrid checkpoints name the norms and the three convs as OLMo-core does (and save_pretrained writes
    them so); the names transformers uses inside the model load to the same model."""
    src = hf_runs["olmo_hybrid"][0]
    tensors = load_file(str(src / "model.safetensors"))
    renamed = {}
    for name, t in tensors.items():
        name = name.replace("attention_layer_norm", "input_layernorm").replace("feedforward_layer_norm",
                                                                              "post_attention_layernorm")
        renamed[name] = t
    for layer in (0, 2):
        p = f"model.layers.{layer}.linear_attn."
        renamed[p + "conv1d.weight"] = torch.cat([renamed.pop(p + f"{n}_conv1d.weight") for n in "qkv"])
    dst = tmp_path / "renamed"
    shutil.copytree(src, dst)
    save_file(renamed, str(dst / "model.safetensors"))
    ids = tokens()
    assert torch.equal(workbench.from_pretrained(dst)(ids), workbench.from_pretrained(src)(ids))


def test_nemotron_h_pattern_and_older_key_names_load_alike(hf_runs, tmp_path):
    """The ``hybrid_override_pattern`` string and the ``mamba_*`` names of older Nemotron-H config.json files (which
    NemotronHConfig still reads) open the same model as ``layers_block_type``."""
    src = hf_runs["nemotron_h"][0]
    cfg = json.loads((src / "config.json").read_text())
    old = {k: v for k, v in cfg.items() if k not in ("layers_block_type", "n_groups", "conv_kernel", "time_step_min")}
    old.update(hybrid_override_pattern="M-*EM-", mamba_n_groups=cfg["n_groups"], mamba_d_conv=cfg["conv_kernel"],
               mamba_dt_min=cfg["time_step_min"])
    dst = tmp_path / "old"
    shutil.copytree(src, dst)
    (dst / "config.json").write_text(json.dumps(old))
    ids = tokens()
    a, b = workbench.from_pretrained(dst), workbench.from_pretrained(src)
    assert a.cfg == b.cfg and torch.equal(a(ids), b(ids))


@pytest.mark.parametrize("name", ["qwen3_5_text", "olmo_hybrid", "qwen3_next", "kimi_linear", "mamba2", "nemotron_h"])
def test_the_fast_weight_analyses_run_on_imported_models(hf_runs, name):
    from workbench.analysis import effective_attention, induction_score, probe_associations

    model = workbench.from_pretrained(hf_runs[name][0])
    ids = tokens()[:, :24]
    logits, cache = model.run_with_cache(ids)
    for layer in model.mixer_layers:  # effective attention reconstructs hook_z exactly, every layer with a mixer
        a = effective_attention(model, ids, layer)
        z = torch.einsum("bhqk,bkhd->bqhd", a, cache[f"blocks.{layer}.attn.hook_v"])
        assert rel(z, cache[f"blocks.{layer}.attn.hook_z"]) <= 1e-5, layer
        assert induction_score(a, ids).shape == (BATCH, a.shape[1])
    layer = model.fast_weight_layers[-1]
    w = model.fast_weights(ids, layer, [10])  # [batch, 1, head, d_k, d_v]
    attn = model.mixer(layer)
    assert w.shape == (BATCH, 1, attn.n_heads, attn.d_k, attn.d_v)
    q = cache[f"blocks.{layer}.attn.hook_q"][:, 10] * attn.scale  # the read-out at t is W_tᵀ (q_t / √d_k)
    assert rel(torch.einsum("bhk,bhkv->bhv", q, w[:, 0]), cache[f"blocks.{layer}.attn.hook_z"][:, 10]) <= 1e-5

    def zero(state, hook):
        return torch.zeros_like(state)

    z_name = f"blocks.{layer}.attn.hook_z"
    for mode, changed in (("readout", [10]), ("carry", list(range(10, 24)))):
        with model.expose_states([10], mode=mode, layers=[layer]), \
                model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_state", zero)]):
            _, patched = model.run_with_cache(ids, names_filter=lambda n: n == z_name)
        diff = (patched[z_name] - cache[z_name]).abs().amax(dim=(0, 2, 3))  # [pos]
        assert set(torch.nonzero(diff > 1e-6).flatten().tolist()) == set(changed), mode
    df = probe_associations(model, ids, layer, [[(1, 2), (4, 5)]] * BATCH)
    assert len(df) and df.fidelity.notna().all() and set(df["head"]) == set(range(model.cfg.n_heads))


@pytest.mark.parametrize("name, layer", [("qwen3_next", 1), ("kimi_linear", 2), ("nemotron_h", 3)])
def test_the_experts_hooks_hold_transformers_routing_and_expert_outputs(hf_runs, name, layer):
    """Qwen3-Next's (softmax) and Kimi Linear's and Nemotron-H's (grouped sigmoid, correction bias, scaled) sparse
    MLPs: our router logits, chosen experts, weights and each chosen expert's output are transformers' (its router and
    its experts' weights applied to the same input); patching the chosen experts reroutes the tokens."""
    source = build(name, seed=list(CASES).index(name))
    ours = workbench.from_pretrained(hf_runs[name][0])
    ids = tokens()[:, :20]
    seen = {}
    block = source.model.layers[layer]
    moe = block.mixer if name == "nemotron_h" else block.mlp  # Nemotron-H: the MoE is the block's one branch
    moe.register_forward_pre_hook(lambda m, a: seen.__setitem__("x", a[0]))
    moe.gate.register_forward_hook(lambda m, a, out: seen.__setitem__("router", out))
    with torch.no_grad():
        source(input_ids=ids)
    logits, weights, index = seen["router"]  # [tokens, expert], [tokens, top_k] ×2 (both routers' order)
    order = index.argsort(-1)  # Kimi's router picks its top k unsorted: compare expert by expert
    index, weights = index.gather(-1, order), weights.gather(-1, order)
    _, cache = ours.run_with_cache(ids)
    p = f"blocks.{layer}.mlp."
    our_index = cache[p + "hook_expert_index"].flatten(0, 1)
    our_order = our_index.argsort(-1)
    assert rel(cache[p + "hook_router_logits"].flatten(0, 1), logits) <= 1e-5
    assert torch.equal(our_index.gather(-1, our_order), index)
    assert rel(cache[p + "hook_expert_weights"].flatten(0, 1).gather(-1, our_order), weights) <= 1e-5
    x = seen["x"].flatten(0, 1)  # [tokens, d_model]: the MLP's input in transformers

    def expert(e: int, inp: torch.Tensor) -> torch.Tensor:  # transformers' expert e (its Experts.forward)
        if not hasattr(moe.experts, "gate_up_proj"):  # Nemotron-H: relu² experts without a gate
            return torch.nn.functional.linear(moe.experts.act_fn(torch.nn.functional.linear(inp, moe.experts.up_proj[e])),
                                              moe.experts.down_proj[e])
        gate, up = torch.nn.functional.linear(inp, moe.experts.gate_up_proj[e]).chunk(2, dim=-1)
        return torch.nn.functional.linear(torch.nn.functional.silu(gate) * up, moe.experts.down_proj[e])

    with torch.no_grad():
        want = torch.stack([torch.stack([expert(int(e), x[t]) for e in our_index[t]]) for t in range(len(x))])
    assert rel(cache[p + "hook_expert_out"].flatten(0, 1), want) <= 1e-5

    def to_experts_3_and_0(idx, hook):
        return torch.tensor([3, 0]).expand_as(idx).clone()

    with ours.hooks(fwd_hooks=[(p + "hook_expert_index", to_experts_3_and_0)]):
        _, rerouted = ours.run_with_cache(ids, names_filter=lambda n: n == p + "hook_expert_out")
    with torch.no_grad():
        want = torch.stack([expert(3, x), expert(0, x)], dim=1)
    assert rel(rerouted[p + "hook_expert_out"].flatten(0, 1), want) <= 1e-5


@pytest.mark.parametrize("name", ["olmo_hybrid", "qwen3_next_sparse_step_dense_layers", "kimi_linear", "nemotron_h"])
def test_outliers_and_kfac_run_on_post_norm_and_moe_layers(hf_runs, name):
    from workbench.analysis.kfac import KFACConfig, collect_kfac
    from workbench.analysis.outliers import outlier_table, state_statistics, trace_outliers

    model = workbench.from_pretrained(hf_runs[name][0])
    ids = tokens()[:, :24]
    stats = trace_outliers(model, [ids], sites=("q", "k", "v", "resid_post", "mlp_hidden"), progress=False)
    assert set(outlier_table(stats).layer) == set(range(model.cfg.n_layers))
    assert set(state_statistics(model, [ids], positions=[2, 8], progress=False).layer) == set(model.fast_weight_layers)
    factors = collect_kfac(model, [ids], KFACConfig(), progress=False)
    post, moe = set(model.cfg.post_norm_layers), {i for i in range(model.cfg.n_layers) if model.cfg.moe_at(i)}
    for i in range(model.cfg.n_layers):  # no site whose output the post-norm hides; no expert weights; only the
        # branches a block has (Nemotron-H: one each)
        assert (f"blocks.{i}.attn.W_O" in factors) == (i not in post and i in model.mixer_layers), i
        assert (f"blocks.{i}.mlp.W_in" in factors) == (i not in moe and i in model.mlp_layers), i


def test_outliers_and_kfac_run_on_mamba2(hf_runs):
    """Mamba-2 blocks have no MLP; K-FAC's sites are the output projections (the fused input projection has no
    hook of its own output)."""
    from workbench.analysis.kfac import KFACConfig, collect_kfac
    from workbench.analysis.outliers import outlier_table, state_statistics, trace_outliers

    model = workbench.from_pretrained(hf_runs["mamba2"][0])
    ids = tokens()[:, :24]
    stats = trace_outliers(model, [ids], sites=("q", "k", "v", "resid_post"), progress=False)
    assert set(outlier_table(stats).layer) == {0, 1}
    assert set(state_statistics(model, [ids], positions=[2, 8], progress=False).layer) == {0, 1}
    assert sorted(collect_kfac(model, [ids], KFACConfig(), progress=False)) == ["blocks.0.attn.W_O", "blocks.1.attn.W_O"]


def test_the_readme_block_runs_on_a_qwen3_5_checkpoint(hf_runs, tmp_path):
    """README.md's second ``py`` block of the checkpoints section (not run by tests/test_readme.py: it needs one)."""
    import re

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index("## Opening released checkpoints"):]
    block = re.findall(r"```py\n(.*?)```", section, flags=re.S)[1]
    src = tmp_path / "m"
    shutil.copytree(hf_runs["qwen3_5_multimodal"][0], src)
    _write_tokenizer(src / "tokenizer.json")
    scope = {"workbench": workbench}
    # the tiny model has attention at layer 1 (the released 0.8B one at layer 3: every fourth layer)
    exec(compile(block.replace('"path/to/Qwen3.5"', repr(str(src))).replace("blocks.3.", "blocks.1."), "README.md",
                 "exec"), scope)
    assert scope["W"].shape == (1, 1, 4, 8, 16)
    assert scope["cache"]["blocks.1.attn.hook_gate"].shape == (1, 5, 2, 16)  # 5 tokens: "The" and 4 unknown


def test_code_that_walks_layers_asks_each_block_what_it_has(hf_runs):
    """Nemotron-H's blocks hold one branch each (cfg.block_kinds): hook names, the residual decomposition, head
    scores, K-FAC sites, W8A8 rounding and the outlier dashboard's layer list follow what each block has."""
    import numpy as np

    from workbench.analysis.kfac import linear_sites
    from workbench.analysis.outliers import decompose_residual, quantize_w8a8, trace_outliers
    from workbench.app_support.attention_maps import head_score_table
    from workbench.app_support.outlier_dashboard import traced_layers

    model = workbench.from_pretrained(hf_runs["nemotron_h"][0])
    ids = tokens()[:, :16]
    logits, cache = model.run_with_cache(ids)
    for i in range(model.cfg.n_layers):
        mixer, mlp = i in model.mixer_layers, i in model.mlp_layers
        assert (f"blocks.{i}.hook_attn_out" in cache, f"blocks.{i}.attn.hook_z" in cache) == (mixer, mixer), i
        assert (f"blocks.{i}.hook_mlp_out" in cache, f"blocks.{i}.ln2.hook_normalized" in cache) == (mlp, mlp), i
        assert f"blocks.{i}.hook_resid_mid" not in cache
        for site in ("resid_pre", "resid_post"):  # every direct write, summed, is the residual stream
            df = decompose_residual(model, ids, neuron=3, layer=i, site=site)
            total = df.groupby(["batch", "pos"]).value.sum().unstack().to_numpy()
            assert np.allclose(total, cache[f"blocks.{i}.hook_{site}"][..., 3].double().numpy(), atol=1e-5), (i, site)
        kinds = set(decompose_residual(model, ids, neuron=3, layer=i).query(f"layer == {i}").kind)
        assert ("head" in kinds) == mixer and ("mlp" in kinds) == mlp, (i, kinds)
    with pytest.raises(ValueError, match="no resid_mid"):
        decompose_residual(model, ids, neuron=3, layer=1, site="resid_mid")
    assert sorted(set(head_score_table(model, ids).layer)) == [0, 2, 4]
    assert {s.layer for s in linear_sites(model) if s.param.split(".")[2] == "attn"} == {0, 2, 4}
    assert {s.layer for s in linear_sites(model) if s.param.split(".")[2] == "mlp"} == {1, 5}  # layer 3: experts
    stats = trace_outliers(model, [ids], sites=("q", "mlp_hidden", "resid_post"), progress=False)
    assert traced_layers(stats, "q") == [0, 2, 4] and traced_layers(stats, "mlp_hidden") == [1, 5]
    quantized = quantize_w8a8(model)
    assert rel(quantized(ids), logits) < 0.1
