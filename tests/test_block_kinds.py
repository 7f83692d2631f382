"""ModelConfig.block_kinds: blocks with a mixer only or an MLP only (Nemotron-H's layers), the relu2 MLP, and every
config written before the option existed loading as before."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import pytest
import torch

import workbench
from workbench.config import ModelConfig
from workbench.mixers import NotDefinedForMixer
from workbench.model import HookedFastWeightLM

TOKENS = torch.randint(0, 32, (2, 12), generator=torch.Generator().manual_seed(0))


def hybrid(**kw) -> ModelConfig:
    return ModelConfig(**{**dict(d_vocab=32, d_model=16, n_layers=4, n_heads=2, d_head=8, d_mlp=24, mlp="relu2",
                                 mixer=["mamba2", None, "softmax", "delta"],
                                 block_kinds=["mixer", "mlp", "mixer", "mixer_mlp"], chunk_size=4), **kw})


def test_each_block_holds_what_its_kind_says():
    model = HookedFastWeightLM(hybrid())
    assert [(b.has_mixer, b.has_mlp) for b in model.blocks] == [(True, False), (False, True), (True, False),
                                                                (True, True)]
    assert not hasattr(model.blocks[1], "attn") and not hasattr(model.blocks[0], "mlp")
    assert model.mixer_layers == [0, 2, 3] and model.mlp_layers == [1, 3] and model.fast_weight_layers == [0, 3]
    assert model.cfg.mixer_label == "Mamba-2, MLP, softmax attention, DeltaNet"
    with pytest.raises(NotDefinedForMixer, match="layer 1 is an MLP-only block.*layers \\[0, 2, 3\\]"):
        model.mixer(1)
    with pytest.raises(ValueError, match="MLP-only block"):
        model.fast_weights(TOKENS, 1, [3])


def test_the_residual_lines_of_one_branch_blocks():
    """A mixer-only block is x + attn(ln1(x)); an MLP-only block x + mlp(ln2(x)); neither has resid_mid."""
    model = HookedFastWeightLM(hybrid())
    _, cache = model.run_with_cache(TOKENS)
    for i in (0, 2):
        assert torch.allclose(cache[f"blocks.{i}.hook_resid_post"],
                              cache[f"blocks.{i}.hook_resid_pre"] + cache[f"blocks.{i}.hook_attn_out"])
    assert torch.allclose(cache["blocks.1.hook_resid_post"], cache["blocks.1.hook_resid_pre"] + cache["blocks.1.hook_mlp_out"])
    assert [f"blocks.{i}.hook_resid_mid" in cache for i in range(4)] == [False, False, False, True]
    pre = cache["blocks.1.mlp.hook_pre"]
    assert torch.equal(cache["blocks.1.mlp.hook_post"], torch.relu(pre) ** 2)  # relu2: squared ReLU, no gate


def test_block_kinds_round_trip_and_old_configs_load_unchanged(tmp_path):
    cfg = hybrid()
    assert ModelConfig.from_json(cfg.to_json()) == cfg and cfg.to_dict()["mixer"][1] is None
    model = HookedFastWeightLM(cfg)
    workbench.save(model, tmp_path / "m")
    again = workbench.load(tmp_path / "m")
    assert again.cfg == cfg and torch.equal(again(TOKENS), model(TOKENS))
    # the default is written one way only, and not at all: config.json of every existing model stays as it was
    plain = ModelConfig(d_vocab=32)
    assert "block_kinds" not in plain.to_dict()
    assert ModelConfig(d_vocab=32, n_layers=2, block_kinds=["mixer_mlp"] * 2) == plain
    assert ModelConfig(d_vocab=32, mlp="none", block_kinds=["mixer"] * 2) == ModelConfig(d_vocab=32, mlp="none")
    root = Path(workbench.__file__).parent / "checkpoints"
    for path in sorted(glob.glob(str(root / "*" / "config.json"))):
        data = json.loads(Path(path).read_text())
        assert "block_kinds" not in data
        loaded = ModelConfig.from_dict(data)
        assert loaded.block_kinds == () and "block_kinds" not in loaded.to_dict(), path
        assert all(loaded.has_mixer(i) and loaded.has_mlp(i) == (loaded.mlp != "none") for i in range(loaded.n_layers))


@pytest.mark.parametrize("kw, match", [
    (dict(block_kinds=["mixer", "mlp"]), "block_kinds must list n_layers = 4"),
    (dict(block_kinds=["mixer", "attn", "mixer", "mlp"]), "block_kinds must list"),
    (dict(mixer=["mamba2", "softmax", "softmax", "delta"]), r"mixer\[1\] is 'softmax attention' but block 1 is 'mlp'"),
    (dict(mixer=["mamba2", None, None, "delta"]), r"mixer\[2\] is 'None' but block 2 is 'mixer'"),
    (dict(mlp="none"), "has blocks with an MLP, but mlp='none'"),
    (dict(mixer=None, block_kinds=()), "must name a mixer"),
])
def test_inconsistent_block_kinds_are_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        hybrid(**kw)


def test_a_single_mixer_serves_every_block_that_has_one():
    cfg = hybrid(mixer="mamba2")
    assert [m and m.kind for m in cfg.layer_mixers] == ["mamba2", None, "mamba2", "mamba2"]
    assert cfg.mixer == hybrid(mixer=["mamba2", None, "mamba2", "mamba2"]).mixer  # the same, written once


def test_relu2_experts():
    """A mixture of experts of squared-ReLU MLPs (Nemotron-H's), in an MLP-only block."""
    from workbench.components.moe import MoEConfig

    moe = MoEConfig(n_experts=4, top_k=2, d_expert=8, d_shared=6, sigmoid_scores=True, score_bias=True,
                    shared_gate=False, dense_layers=(3,))
    model = HookedFastWeightLM(hybrid(moe=moe))
    block = model.blocks[1].mlp
    assert not hasattr(block, "W_gate") and block.shared.kind == "relu2" and model.cfg.moe_at(0) is None
    _, cache = model.run_with_cache(TOKENS)
    x = cache["blocks.1.ln2.hook_normalized"]
    index = cache["blocks.1.mlp.hook_expert_index"]
    e = int(index[0, 0, 0])
    want = torch.relu(x[0, 0] @ block.W_in[e]) ** 2 @ block.W_out[e]
    assert torch.allclose(cache["blocks.1.mlp.hook_expert_out"][0, 0, 0], want, atol=1e-6)
    with pytest.raises(ValueError, match="moe needs mlp='swiglu' or 'relu2'"):
        hybrid(moe=moe, mlp="gelu")
