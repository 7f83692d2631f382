"""Open checkpoints of other libraries as a :class:`~workbench.model.HookedFastWeightLM`, layer by layer the
same model, with every hook of docs/hooks.md.

    model = workbench.from_pretrained("path/to/fla-checkpoint")     # or a hub id, when online
    tokens = model.to_tokens("The capital of France is")
    W = model.fast_weights(tokens, layer=0, positions=[-1])          # [batch, 1, head, d_k, d_v]

A directory holds ``config.json``, ``model.safetensors`` (or shards listed in
``model.safetensors.index.json``) and optionally ``tokenizer.json``. Pickled weights are never loaded.
Each source architecture is one converter module, registered by ``model_type`` (:mod:`.registry`);
docs/pretrained.md lists the architectures and the options each supports or refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

import torch

from ..checkpoint import model_from_tensors
from ..model import HookedFastWeightLM
from ..text.hf_tokenizer import HFTokenizer
from .hub import resolve
from .registry import converter_for, model_types
from .source_config import SourceConfig
from .tensors import Tensors

__all__ = ["from_pretrained", "model_types", "read_safetensors"]

_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")


def from_pretrained(name_or_path: Union[str, Path], *, dtype: torch.dtype = torch.float32,
                    device: Union[str, torch.device] = "cpu", revision: str | None = None) -> HookedFastWeightLM:
    """The checkpoint ``name_or_path`` (directory or hub id) as a HookedFastWeightLM in ``dtype`` on ``device``,
    with its tokenizer attached (``model.tokenizer``, ``model.to_tokens``) when the directory has one.

    Raises ValueError for an architecture or an option workbench does not reproduce exactly (naming it),
    and for pickled weights."""
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    directory = resolve(name_or_path, revision)
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory} has no config.json")
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{config_path} is not valid JSON ({e})") from None
    cfg = SourceConfig(data, str(config_path))
    convert = converter_for(cfg.model_type)
    src = Tensors(read_safetensors(directory), f"the weights in {directory}")
    model_cfg, tensors = convert(cfg, src)
    cfg.check_all_read()
    src.check_all_taken()
    model = model_from_tensors(model_cfg, {k: v.to(torch.float32) for k, v in tensors.items()}, str(directory))
    model = model.to(device=device, dtype=dtype)
    tok_path = directory / "tokenizer.json"
    if tok_path.is_file():
        model.tokenizer = HFTokenizer.from_file(tok_path, bos_token_id=_bos_token_id(data))
    return model.eval()


def _bos_token_id(config: dict):
    bos = config.get("bos_token_id")
    return bos if isinstance(bos, int) else None


def read_safetensors(directory: Path) -> dict[str, torch.Tensor]:
    """Every tensor of the checkpoint in ``directory``: ``model.safetensors``, or the shards named by
    ``model.safetensors.index.json``, or every ``*.safetensors`` file. Pickled weights raise ValueError."""
    from safetensors.torch import load_file

    index = directory / "model.safetensors.index.json"
    if index.is_file():
        weight_map = json.loads(index.read_text())["weight_map"]
        files = sorted({directory / f for f in weight_map.values()})
    elif (directory / "model.safetensors").is_file():
        files = [directory / "model.safetensors"]
    else:
        files = sorted(directory.glob("*.safetensors"))
    if not files:
        pickled = sorted(p.name for p in directory.iterdir() if p.suffix in _PICKLE_SUFFIXES)
        if pickled:
            raise ValueError(f"{directory} holds only pickled weights {pickled}; workbench never loads pickle (it can "
                             "run code). Convert them to safetensors (model.save_pretrained(..., "
                             "safe_serialization=True) in the source library) and open that directory")
        raise FileNotFoundError(f"{directory} has no *.safetensors weights")
    tensors: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f} is listed in model.safetensors.index.json but missing")
        tensors.update(load_file(str(f)))
    return tensors
