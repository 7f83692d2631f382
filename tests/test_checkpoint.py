"""Checkpoints round-trip exactly and every kind of damage gives one clear CheckpointError."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from workbench import CheckpointError, HookedFastWeightLM, ModelConfig, load, save
from workbench.checkpoint import load_from_bytes

TOKENS = torch.randint(0, 19, (2, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("mixer", ["softmax", "linear", "delta", "gated_delta"])
def test_round_trip_gives_identical_logits(tmp_path, mixer):
    extra = dict(feature_map="favor") if mixer == "linear" else {}
    model = HookedFastWeightLM(ModelConfig.from_dict(dict(d_vocab=19, d_model=16, n_heads=2, d_head=8, d_mlp=16, mixer=mixer,
                                           init_std=0.2, **extra)))
    save(model, tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    again = load(tmp_path / "ckpt")
    assert again.cfg == model.cfg
    assert torch.equal(again(TOKENS), model(TOKENS))
    blob = (tmp_path / "ckpt" / "model.safetensors").read_bytes()
    from_bytes = load_from_bytes((tmp_path / "ckpt" / "config.json").read_text(), blob)
    assert torch.equal(from_bytes(TOKENS), model(TOKENS))


@pytest.fixture
def ckpt(tmp_path):
    model = HookedFastWeightLM(ModelConfig(d_vocab=19, d_model=16, n_heads=2, d_head=8, d_mlp=16))
    return save(model, tmp_path / "ckpt"), model


def test_missing_pieces(tmp_path, ckpt):
    d, _ = ckpt
    with pytest.raises(CheckpointError, match="does not exist"):
        load(tmp_path / "nowhere")
    (d / "model.safetensors").rename(tmp_path / "w")
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load(d)
    (tmp_path / "w").rename(d / "model.safetensors")
    (d / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json is missing"):
        load(d)


def test_bad_configs(ckpt):
    d, model = ckpt
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load(d)
    (d / "config.json").write_text(json.dumps({**model.cfg.to_dict(), "n_layer": 2}))
    with pytest.raises(CheckpointError, match=r"unknown ModelConfig keys \['n_layer'\]"):
        load(d)
    (d / "config.json").write_text(json.dumps({**model.cfg.to_dict(), "mixer": "lstm"}))
    with pytest.raises(CheckpointError, match="unknown mixer"):
        load(d)


def test_corrupt_and_mismatched_weights(ckpt):
    d, model = ckpt
    w = d / "model.safetensors"
    blob = w.read_bytes()
    w.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load(d)
    tensors = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["unembed.W_U"] = torch.zeros(3, 3)
    save_file(tensors, str(w))
    with pytest.raises(CheckpointError, match=r"'unembed.W_U' has shape \(3, 3\), the config needs \(16, 19\)"):
        load(d)
    del tensors["unembed.W_U"]
    tensors["extra"] = torch.zeros(1)
    save_file(tensors, str(w))
    with pytest.raises(CheckpointError, match=r"missing tensors \['unembed.W_U'\]; unexpected tensors \['extra'\]"):
        load(d)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_from_bytes(model.cfg.to_json(), b"\x00" * 8)


def test_uploads_files_and_versions(tmp_path, ckpt):
    d, model = ckpt
    blob = (d / "model.safetensors").read_bytes()
    # a parsed dict (what an app gets from json.loads of an upload) loads like the text
    assert torch.equal(load_from_bytes(model.cfg.to_dict(), blob)(TOKENS), model(TOKENS))
    with pytest.raises(CheckpointError, match=r"config.json: unknown ModelConfig keys \['bogus'\]"):
        load_from_bytes({**model.cfg.to_dict(), "bogus": 1}, blob)
    with pytest.raises(CheckpointError, match="not UTF-8"):
        load_from_bytes(b"\xff\xfe", blob)
    with pytest.raises(TypeError, match="weights must be the bytes"):
        load_from_bytes(model.cfg.to_dict(), "not bytes")
    # the checkpoint path given as the weights file, and saving over a file
    with pytest.raises(CheckpointError, match="is a file; pass the checkpoint directory"):
        load(d / "model.safetensors")
    with pytest.raises(CheckpointError, match="it is a file, not a directory"):
        save(model, d / "config.json")
    # a file from a newer workbench format is refused with the fix in the message
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "workbench", "version": "99"})
    with pytest.raises(CheckpointError, match="format version '99'.*upgrade workbench"):
        load(d)
    with pytest.raises(CheckpointError, match="format version '99'"):
        load_from_bytes(model.cfg.to_dict(), (d / "model.safetensors").read_bytes())
    # integer tensors where the model holds floats
    name = next(iter(tensors))
    save_file({**tensors, name: tensors[name].long()}, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=f"{name}.*expected a floating-point dtype"):
        load(d)
