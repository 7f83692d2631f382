"""Checkpoints: ``config.json`` + ``model.safetensors`` in a directory. Never pickle.

Every problem — a missing file, a config that is not JSON or has unknown keys, a corrupt weights file,
missing, unexpected or mis-shaped tensors — raises one :class:`CheckpointError` naming it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

from .config import ModelConfig
from .model import HookedFastWeightLM

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_VERSION = "1"


class CheckpointError(ValueError):
    """A checkpoint could not be read; the message says which file and what is wrong."""


def save(model: HookedFastWeightLM, directory: Union[str, Path]) -> Path:
    """Write ``model`` to ``directory`` (created if needed); returns the directory."""
    if not isinstance(model, HookedFastWeightLM):
        raise TypeError(f"save expects a HookedFastWeightLM, got {type(model).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / CONFIG_FILE).write_text(model.cfg.to_json() + "\n")
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    save_file(tensors, str(directory / WEIGHTS_FILE), metadata={"format": "workbench", "version": FORMAT_VERSION})
    return directory


def config_from_text(text: str, where: str = CONFIG_FILE) -> ModelConfig:
    try:
        return ModelConfig.from_json(text)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: {e}") from None


def model_from_tensors(cfg: ModelConfig, tensors: dict[str, torch.Tensor], where: str = WEIGHTS_FILE,
                       device: Union[str, torch.device] = "cpu") -> HookedFastWeightLM:
    model = HookedFastWeightLM(cfg)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected}")
        raise CheckpointError(f"{where} does not match config: " + "; ".join(parts))
    for name, t in tensors.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {tuple(t.shape)}, the config needs {tuple(expected[name].shape)}"
            )
    model.load_state_dict(tensors, strict=True)
    return model.to(device)


def load(directory: Union[str, Path], device: Union[str, torch.device] = "cpu") -> HookedFastWeightLM:
    """Read a checkpoint written by :func:`save`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    if not cfg_path.is_file():
        raise CheckpointError(f"{cfg_path} is missing: a checkpoint needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    if not w_path.is_file():
        raise CheckpointError(f"{w_path} is missing: a checkpoint needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    cfg = config_from_text(cfg_path.read_text(), str(cfg_path))
    try:
        tensors = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{w_path} is not a readable safetensors file ({e})") from None
    return model_from_tensors(cfg, tensors, str(w_path), device)


def load_from_bytes(config_text: Union[str, bytes], weights: bytes,
                    device: Union[str, torch.device] = "cpu") -> HookedFastWeightLM:
    """Build a model from an uploaded ``config.json`` text and ``model.safetensors`` bytes."""
    if isinstance(config_text, bytes):
        try:
            config_text = config_text.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{CONFIG_FILE} is not UTF-8 text") from None
    cfg = config_from_text(config_text)
    try:
        tensors = load_bytes(weights)
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{WEIGHTS_FILE} is not a readable safetensors file ({e})") from None
    return model_from_tensors(cfg, tensors, WEIGHTS_FILE, device)
