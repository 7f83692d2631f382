"""Property-based tests of ModelConfig (hypothesis; the ``ci`` profile in tests/conftest.py).

Every drawn valid config (small sizes, any registered mixer, per-layer mixer lists, block styles and kinds, norms,
MLPs) builds, runs on drawn tokens to finite logits, and round-trips through save/load bit-identically (config
and every tensor, hence the logits). Every drawn invalid value raises ValueError naming its field.
"""

from __future__ import annotations

import json

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from workbench import load, save
from workbench.config import ModelConfig
from workbench.mixers import names
from workbench.model import HookedFastWeightLM


@st.composite
def config_dicts(draw) -> dict:
    n_layers = draw(st.integers(1, 3))
    n_heads = draw(st.sampled_from([1, 2, 4]))
    d_head = draw(st.sampled_from([4, 8]))
    mlp = draw(st.sampled_from(["gelu", "swiglu", "relu2", "none"]))
    per_layer = draw(st.booleans())
    mixer = ([draw(st.sampled_from(names())) for _ in range(n_layers)] if per_layer
             else draw(st.sampled_from(names())))
    data = dict(d_vocab=draw(st.integers(2, 40)), d_model=draw(st.sampled_from([8, 16, 32])), n_layers=n_layers,
                n_heads=n_heads, d_head=d_head, n_ctx=draw(st.sampled_from([16, 64])), mixer=mixer, mlp=mlp,
                d_mlp=draw(st.sampled_from([8, 24])), norm=draw(st.sampled_from(["layernorm", "rmsnorm", "none"])),
                block=draw(st.sampled_from(["pre_norm", "outlier_protected"])),
                positional=draw(st.sampled_from(["learned", "none"])),
                chunk_size=draw(st.sampled_from([1, 4, 64])), backend=draw(st.sampled_from(["chunk", "reference"])),
                seed=draw(st.integers(0, 5)))
    if mlp != "none" and draw(st.booleans()):
        data["block_kinds"] = [draw(st.sampled_from(["mixer_mlp", "mixer", "mlp"])) for _ in range(n_layers)]
        if per_layer:
            data["mixer"] = [None if kind == "mlp" else m for kind, m in zip(data["block_kinds"], mixer)]
    return data


def _build(data: dict) -> ModelConfig:
    """The config, or reject the example when the combination is refused (the refusal must name a field)."""
    try:
        return ModelConfig.from_dict(json.loads(json.dumps(data)))
    except ValueError as e:
        assert "ModelConfig" in str(e) or "Config" in str(e) or "mixer" in str(e), str(e)
        assume(False)


@given(config_dicts(), st.integers(1, 20), st.integers(0, 1000))
def test_valid_configs_build_run_and_round_trip_bit_identically(tmp_path_factory, data, pos, seed):
    cfg = _build(data)
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    torch.manual_seed(seed)
    model = HookedFastWeightLM(cfg).eval()
    pos = min(pos, cfg.n_ctx)
    tokens = torch.randint(0, cfg.d_vocab, (2, pos), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        logits = model(tokens)
    assert logits.shape == (2, pos, cfg.d_vocab) and torch.isfinite(logits).all()
    assert cfg.min_params <= model.num_params()  # the loaders' size guard never refuses a real model
    directory = save(model, tmp_path_factory.mktemp("ckpt"))
    again = load(directory)
    assert again.cfg == cfg
    before, after = model.state_dict(), again.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) and before[k].dtype == after[k].dtype for k in before)
    with torch.no_grad():
        assert torch.equal(again(tokens), logits)


BAD_VALUES = {
    "d_vocab": [0, -3, 2.5, True, "64", None],
    "d_model": [0, -1, 1.5, False, "8"],
    "n_layers": [0, -2, 2.0],
    "n_heads": [0, "4"],
    "d_head": [0, -8],
    "n_ctx": [0, 3.5],
    "d_mlp": [-1, 1.5],
    "chunk_size": [0, -64, 16.0],
    "seed": [-1, "0"],
    "norm": ["batchnorm", None, 1],
    "mlp": ["relu", ""],
    "positional": ["rotary"],
    "block": ["post_norm"],
    "backend": ["triton", "CHUNK"],
    "init_std": [0, -0.02, "0.02", float("nan")],
    "norm_eps": [0.0, -1e-5],
    "branch_scale": [0, -0.2],
    "post_norm_layers": [[5], [0, 0], "0"],
    "block_kinds": [["mixer"] * 7, ["attention", "mlp"]],
    "mixer": ["no_such_mixer", 3, None, ["delta"] * 5],
    "moe": [3, "moe"],
}


@given(st.sampled_from(sorted(BAD_VALUES)), st.data())
def test_invalid_values_raise_value_error_naming_the_field(field, data):
    value = data.draw(st.sampled_from(BAD_VALUES[field]))
    good = dict(d_vocab=16, d_model=16, n_layers=2, n_heads=2, d_head=8, mixer="delta")
    with pytest.raises(ValueError) as info:
        ModelConfig.from_dict({**good, field: value})
    assert field in str(info.value), str(info.value)


@given(st.text(st.characters(min_codepoint=97, max_codepoint=122), min_size=1, max_size=12))
def test_unknown_keys_raise_value_error_naming_the_key(key):
    assume(key not in {f for f in ModelConfig.__dataclass_fields__})
    with pytest.raises(ValueError) as info:
        ModelConfig.from_dict({"d_vocab": 16, key: 1})
    assert key in str(info.value)
