"""workbench.from_pretrained on flash-linear-attention checkpoints, against fla itself.

A subprocess (tests/fla_reference/run_fla.py) builds tiny random-weight fla models with fla's own config and
model classes, saves them with ``save_pretrained`` and records fla's logits, hidden states and cached
recurrent states; fla's Triton-only functions are swapped there for fla's naive references and plain torch,
and a stand-in ``triton`` (tests/fla_reference/triton_stub) only satisfies the imports — keeping fla + triton
out of this process (with both importable, transformers would dispatch Qwen3-Next's delta rule to fla).
Here each checkpoint is opened with ``from_pretrained`` and compared to ≤ 1e-4 relative error in fp32.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import workbench

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
T, BATCH = 70, 2  # crosses a chunk boundary of the chunkwise kernel (C = 64)
STATE_POSITIONS = [0, 33, 69]
TINY = dict(hidden_size=32, num_hidden_layers=2, vocab_size=61, hidden_ratio=2)

CASES = {
    "delta_default": ("delta_net", dict(num_heads=2)),
    "delta_gate_noconv_nobeta_expand_v2_relu_sum": (
        "delta_net", dict(num_heads=2, use_gate=True, use_short_conv=False, use_beta=False, expand_v=2,
                          qk_activation="relu", qk_norm="sum")),
    "delta_elu_negeig_expand_k_half_tied": (
        "delta_net", dict(num_heads=2, qk_activation="elu", allow_neg_eigval=True, expand_k=0.5,
                          tie_word_embeddings=True, conv_size=3)),
    "delta_identity": ("delta_net", dict(num_heads=4, qk_activation="identity", intermediate_size=48)),
    "gated_grouped_negeig": (
        "gated_deltanet", dict(num_heads=2, head_dim=8, num_v_heads=4, expand_v=2, allow_neg_eigval=True)),
    "gated_nogate_tied": ("gated_deltanet", dict(num_heads=2, head_dim=16, expand_v=1, use_gate=False,
                                                 tie_word_embeddings=True)),
    "gated_sigmoid_noconv": ("gated_deltanet", dict(num_heads=4, head_dim=8, num_v_heads=8, expand_v=1.5,
                                                    use_short_conv=False, output_gate_activation="sigmoid")),
    # hybrids: softmax attention (rotary, grouped KV heads, biases, a window) at layer 1 of 3
    "delta_hybrid_attn": ("delta_net", dict(num_heads=2, num_hidden_layers=3, attn=dict(
        layers=[1], num_heads=4, num_kv_heads=2, qkv_bias=True, window_size=16, rope_theta=500.0))),
    "gated_hybrid_attn_own_heads": ("gated_deltanet", dict(num_heads=2, head_dim=8, num_v_heads=4,
                                                           num_hidden_layers=3, attn=dict(layers=[1], num_heads=2))),
    # GLA: the decay-gated sum rule with a decay per key channel
    "gla_default": ("gla", dict(num_heads=2)),
    "gla_conv_relu_nogate_clamp_tied": ("gla", dict(num_heads=4, expand_k=1, use_short_conv=True, conv_size=3,
                                                    feature_map="relu", use_output_gate=False, clamp_min=-0.02,
                                                    tie_word_embeddings=True)),
    "gla_swish_unfused_noaffine_hybrid": ("gla", dict(num_heads=2, expand_v=2, feature_map="swish", fuse_norm=False,
                                                      elementwise_affine=False, num_hidden_layers=3,
                                                      attn=dict(layers=[1], num_heads=2))),
}


def _tokens() -> torch.Tensor:
    return torch.randint(0, TINY["vocab_size"], (BATCH, T), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def fla_runs(tmp_path_factory) -> dict[str, Path]:
    """Run the fla subprocess once for every case; name → directory (``model/``, ``outputs.safetensors``)."""
    if importlib.util.find_spec("fla") is None:
        pytest.skip("flash-linear-attention is not installed (pip install -e '.[dev]')")
    root = tmp_path_factory.mktemp("fla")
    tokens = _tokens().tolist()
    specs = [dict(model_type=mt, config={**TINY, **kw}, seed=i, out=str(root / name), tokens=tokens,
                  state_positions=STATE_POSITIONS) for i, (name, (mt, kw)) in enumerate(CASES.items())]
    (root / "specs.json").write_text(json.dumps(specs))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    res = subprocess.run([sys.executable, str(HERE / "fla_reference" / "run_fla.py"), str(root / "specs.json")],
                         capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, f"the fla subprocess failed:\n{res.stderr[-4000:]}"
    return {name: root / name for name in CASES}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("name", list(CASES))
def test_logits_layers_and_states_match_fla(fla_runs, name):
    model = workbench.from_pretrained(fla_runs[name] / "model")
    ref = load_file(str(fla_runs[name] / "outputs.safetensors"))
    tokens = _tokens()
    logits, cache = model.run_with_cache(tokens)
    assert rel(logits, ref["logits"]) <= 1e-4
    n = model.cfg.n_layers
    for i in range(n):  # fla's hidden_states[i] is block i's input; the last is after the final norm
        assert rel(cache[f"blocks.{i}.hook_resid_pre"], ref[f"hidden_{i}"]) <= 1e-4, f"block {i}"
    assert rel(cache["ln_final.hook_normalized"], ref[f"hidden_{n}"]) <= 1e-4
    for layer in model.fast_weight_layers:
        ours = model.fast_weights(tokens, layer, STATE_POSITIONS)  # [batch, n_positions, head, d_k, d_v]
        for j, pos in enumerate(STATE_POSITIONS):
            assert rel(ours[:, j], ref[f"state_{layer}_{pos}"]) <= 1e-4, f"layer {layer} position {pos}"


def test_grouped_value_heads_effective_attention_is_exact(fla_runs):
    """With num_v_heads > num_heads the analyses see one state per value head; A · v reproduces hook_z."""
    model = workbench.from_pretrained(fla_runs["gated_grouped_negeig"] / "model")
    assert model.cfg.n_heads == 4 and model.mixer(0).n_qk_heads == 2 and model.mixer(0).d_v == 16
    tokens = _tokens()[:1, :40]
    _, cache = model.run_with_cache(tokens)
    a = model.effective_attention(tokens, 1)  # [batch, head, pos, pos]
    z = torch.einsum("bhqk,bkhd->bqhd", a, cache["blocks.1.attn.hook_v"])
    assert rel(z, cache["blocks.1.attn.hook_z"]) <= 1e-5


@pytest.mark.parametrize("name", ["gated_grouped_negeig", "gated_hybrid_attn_own_heads", "delta_hybrid_attn",
                                  "delta_gate_noconv_nobeta_expand_v2_relu_sum", "gla_conv_relu_nogate_clamp_tied"])
def test_the_analyses_run_on_imported_models(fla_runs, name):
    """Grouped heads, d_v ≠ d_k, softmax layers with rotary / grouped KV heads: the analyses see one q, k, v,
    state per head and run."""
    from workbench.analysis import effective_attention, induction_score, probe_associations
    from workbench.analysis.kfac import KFACConfig, collect_kfac
    from workbench.analysis.outliers import outlier_table, state_statistics, trace_outliers

    model = workbench.from_pretrained(fla_runs[name] / "model")
    tokens = _tokens()[:, :24]
    df = probe_associations(model, tokens, model.fast_weight_layers[-1], [[(1, 2), (4, 5)]] * BATCH)
    assert len(df) and df.fidelity.notna().all() and set(df["head"]) == set(range(model.cfg.n_heads))
    for layer in range(model.cfg.n_layers):
        _, cache = model.run_with_cache(tokens)
        a = effective_attention(model, tokens, layer)
        z = torch.einsum("bhqk,bkhd->bqhd", a, cache[f"blocks.{layer}.attn.hook_v"])
        assert rel(z, cache[f"blocks.{layer}.attn.hook_z"]) <= 1e-5, layer
        assert induction_score(a, tokens).shape == (BATCH, a.shape[1])
    stats = trace_outliers(model, [tokens], sites=("q", "k", "v", "resid_post"), progress=False)
    assert set(outlier_table(stats).layer) == set(range(model.cfg.n_layers))
    assert set(state_statistics(model, [tokens], positions=[2, 8], progress=False).layer) == set(model.fast_weight_layers)
    factors = collect_kfac(model, [tokens], KFACConfig(), progress=False)  # every linear layer, grouped heads too
    assert any(".attn.W_K" in name for name in factors) and any(".attn.W_V" in name for name in factors)


def test_round_trip_in_our_format_is_bit_identical(fla_runs, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(fla_runs["gated_grouped_negeig"] / "model", src)
    _write_tokenizer(src / "tokenizer.json")
    model = workbench.from_pretrained(src)
    workbench.save(model, tmp_path / "ours")
    again = workbench.load(tmp_path / "ours")
    assert again.cfg == model.cfg
    for (k, a), (k2, b) in zip(model.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    tokens = _tokens()
    assert torch.equal(model(tokens), again(tokens))
    assert again.to_str_tokens("the cat sat") == model.to_str_tokens("the cat sat") == ["the", " cat", " sat"]


def _write_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {"[BOS]": 0, "the": 1, "Ġcat": 2, "Ġsat": 3, "[UNK]": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    path.write_text(tok.to_str())


def test_tokenizer_is_attached(fla_runs, tmp_path):
    src = tmp_path / "m"
    shutil.copytree(fla_runs["delta_default"] / "model", src)
    _write_tokenizer(src / "tokenizer.json")
    model = workbench.from_pretrained(src)
    assert model.to_tokens("the cat sat").tolist() == [[1, 2, 3]]
    assert model.to_tokens("the cat", prepend_bos=True).tolist() == [[1, 1, 2]]  # fla's default bos_token_id = 1
    assert model.to_str_tokens(torch.tensor([1, 3])) == ["the", " sat"]
    assert model.to_string([1, 2]) == "the cat"
    bare = workbench.from_pretrained(fla_runs["delta_default"] / "model")
    with pytest.raises(ValueError, match="no tokenizer"):
        bare.to_tokens("the cat")


def test_sharded_checkpoint_and_bfloat16(fla_runs, tmp_path):
    src = fla_runs["delta_default"] / "model"
    tensors = load_file(str(src / "model.safetensors"))
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    (tmp_path / "config.json").write_text((src / "config.json").read_text())
    for file, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, str(tmp_path / file))
    index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    tokens = _tokens()
    assert torch.equal(workbench.from_pretrained(tmp_path)(tokens), workbench.from_pretrained(src)(tokens))
    half = workbench.from_pretrained(src, dtype=torch.bfloat16)
    assert next(half.parameters()).dtype == torch.bfloat16
    assert torch.isfinite(half(tokens).float()).all()


def test_checkpoints_of_fla_before_feb_2025_load(fla_runs, tmp_path):
    """Older fla saved the MLP's gate and up projections as one gate_proj [2·d_mlp, hidden] (gate first) and
    wrote norm_first=false; the same weights in that layout give the same model."""
    src = fla_runs["delta_default"] / "model"
    tensors = load_file(str(src / "model.safetensors"))
    for name in [n for n in tensors if n.endswith("mlp.gate_proj.weight")]:
        up = tensors.pop(name.replace("gate_proj", "up_proj"))
        tensors[name] = torch.cat([tensors[name], up], dim=0)
    old = _edited(src, tmp_path / "old", norm_first=False)
    save_file(tensors, str(old / "model.safetensors"))
    tokens = _tokens()
    assert torch.equal(workbench.from_pretrained(old)(tokens), workbench.from_pretrained(src)(tokens))
    with pytest.raises(ValueError, match="norm_first"):
        workbench.from_pretrained(_edited(old, tmp_path / "nf", norm_first=True))


def _edited(src: Path, dst: Path, **changes) -> Path:
    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.update(changes)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.parametrize("changes, match", [
    (dict(model_type="mamba"), "model_type .mamba."),
    (dict(attn={"layers": [1], "num_heads": 2, "qk_norm": True}), "qk_norm"),
    (dict(attn={"layers": [5], "num_heads": 2}), "attn layers"),
    (dict(hidden_act="powlu"), "hidden_act"),
    (dict(qk_norm="rms"), "qk_norm"),
    (dict(some_new_option=3), "some_new_option"),
    (dict(attnres_block_size=2), "attnres_block_size"),
])
def test_options_we_do_not_reproduce_raise(fla_runs, tmp_path, changes, match):
    bad = _edited(fla_runs["delta_default"] / "model", tmp_path / "bad", **changes)
    with pytest.raises(ValueError, match=match):
        workbench.from_pretrained(bad)


def test_the_readme_block_runs_on_an_fla_checkpoint(fla_runs, tmp_path):
    """README.md's ``py`` block that opens a checkpoint (not run by tests/test_readme.py: it needs one)."""
    import re

    text = (HERE.parent / "README.md").read_text()
    section = text[text.index("## Opening released checkpoints"):]
    block = re.search(r"```py\n(.*?)```", section, flags=re.S).group(1)
    src = tmp_path / "m"
    shutil.copytree(fla_runs["delta_default"] / "model", src)
    _write_tokenizer(src / "tokenizer.json")
    scope = {"workbench": workbench}
    exec(compile(block.replace('"path/to/delta_net-1.3B-100B"', repr(str(src))), "README.md", "exec"), scope)
    assert scope["W"].shape == (1, 1, 2, 16, 16)
