"""workbench.from_pretrained without fla: where a checkpoint is, what is refused before any weight is read,
and the bookkeeping that accounts for every config key and tensor. The parity with fla itself is in
tests/test_pretrained_fla.py."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import workbench
from workbench.pretrained import model_types
from workbench.pretrained.source_config import SourceConfig
from workbench.pretrained.tensors import Tensors


def _dir(tmp_path, config: dict, weights: bool = True):
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(config))
    if weights:
        save_file({"x": torch.zeros(1)}, str(tmp_path / "model.safetensors"))
    return tmp_path


def test_the_registry_names_the_fla_architectures():
    assert {"delta_net", "gated_deltanet"} <= set(model_types())


def test_the_registry_names_the_transformers_architectures():
    assert {"qwen3_5", "qwen3_5_text", "olmo_hybrid", "qwen3_next", "kimi_linear"} <= set(model_types())


_QWEN = dict(model_type="qwen3_5_text", vocab_size=8, hidden_size=8, intermediate_size=8, num_hidden_layers=2,
             num_attention_heads=2, num_key_value_heads=1, head_dim=4, linear_num_key_heads=1, linear_num_value_heads=2,
             linear_key_head_dim=4, linear_value_head_dim=4, layer_types=["linear_attention", "full_attention"],
             rope_parameters=dict(rope_type="default", rope_theta=1e4, partial_rotary_factor=0.5))


@pytest.mark.parametrize("changes, match", [
    (dict(rope_parameters=dict(rope_type="yarn", rope_theta=1e4, factor=4.0)), "rope"),
    (dict(rope_parameters=dict(rope_type="default", rope_theta=1e4, partial_rotary_factor=0.25)), "even"),
    (dict(layer_types=["linear_attention", "sliding_attention"]), "layer_types"),
    (dict(linear_num_key_heads=2, linear_num_value_heads=3), "multiple of linear_num_key_heads"),
    (dict(hidden_act="gelu"), "hidden_act"),
    (dict(attention_bias=True), "attention_bias"),
    (dict(model_type="kimi_linear", num_key_value_heads=1), "num_key_value_heads must equal"),
    (dict(model_type="kimi_linear", moe_router_activation_func="softmax"), "moe_router_activation_func"),
])
def test_transformers_options_we_do_not_reproduce_are_refused_before_any_weight(tmp_path, changes, match):
    """The checks on config.json run before any tensor is placed: the one dummy tensor is never asked for."""
    with pytest.raises(ValueError, match=match):
        workbench.from_pretrained(_dir(tmp_path, {**_QWEN, **changes}))


def test_an_unknown_architecture_is_named(tmp_path):
    with pytest.raises(ValueError, match="model_type 'lfm2'.*opens"):
        workbench.from_pretrained(_dir(tmp_path, {"model_type": "lfm2"}))


def test_pickled_weights_are_refused(tmp_path):
    d = _dir(tmp_path, {"model_type": "delta_net"}, weights=False)
    (d / "pytorch_model.bin").write_bytes(b"never unpickled")
    with pytest.raises(ValueError, match="never loads pickle.*safetensors"):
        workbench.from_pretrained(d)


def test_a_shard_missing_from_the_index_is_named(tmp_path):
    d = _dir(tmp_path, {"model_type": "delta_net"}, weights=False)
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"a": "model-1-of-1.safetensors"}}))
    with pytest.raises(FileNotFoundError, match="model-1-of-1.safetensors"):
        workbench.from_pretrained(d)


def test_offline_a_hub_id_fails_at_once_and_says_to_pass_a_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="offline.*local directory"):
        workbench.from_pretrained("some-owner/not-cached-model-xyz")
    with pytest.raises(FileNotFoundError, match="neither a directory nor a hub id"):
        workbench.from_pretrained(tmp_path / "no" / "such" / "dir")


def test_dtype_must_be_floating(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        workbench.from_pretrained(tmp_path, dtype=torch.int64)


def test_source_config_accounts_for_every_key():
    cfg = SourceConfig({"model_type": "x", "a": 1, "b": "y", "c": None, "new": 3}, "config.json")
    assert cfg.get("a") == 1 and cfg.get("c", 5) == 5 and cfg.get("absent", 7) == 7
    with pytest.raises(ValueError, match="b = 'y' is not supported"):
        cfg.get("b", allowed=["z"])
    with pytest.raises(ValueError, match=r"\['new'\]"):
        cfg.check_all_read()
    cfg.ignore("new")
    cfg.check_all_read()
    with pytest.raises(ValueError, match="has no 'missing'"):
        cfg.get("missing")


def test_tensors_are_taken_once_with_their_shape():
    src = Tensors({"w": torch.zeros(2, 3), "i": torch.zeros(2, dtype=torch.long), "extra": torch.zeros(1)}, "here")
    with pytest.raises(ValueError, match="shape"):
        src.take("w", (3, 2))
    src = Tensors({"w": torch.zeros(2, 3), "i": torch.zeros(2, dtype=torch.long), "extra": torch.zeros(1)}, "here")
    assert src.take("w", (2, 3)).shape == (2, 3)
    with pytest.raises(ValueError, match="no tensor 'w'"):
        src.take("w", (2, 3))
    with pytest.raises(ValueError, match="dtype"):
        src.take("i", (2,))
    with pytest.raises(ValueError, match="extra"):
        src.check_all_taken()
