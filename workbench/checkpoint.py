"""Checkpoints: ``config.json`` + ``model.safetensors`` in a directory. Never pickle.

    save(model, "runs/toy")                       # writes runs/toy/config.json, runs/toy/model.safetensors
                                                  # (and tokenizer.json when the model carries one)
    model = load("runs/toy")                      # a HookedFastWeightLM in eval mode, weights checked strictly
    model = load_from_bytes(config_text, blob)    # the same from uploaded files (the app)

The safetensors metadata records ``format="workbench"`` and the format ``version``. Every problem — a
missing file, a config that is not JSON or has unknown keys or bad values, a corrupt weights file, a
newer format version, missing, unexpected, mis-shaped, non-float or non-finite tensors, a config too large for
the tensors given (refused before anything is allocated) — raises one
:class:`CheckpointError` (a ``ValueError``) naming the file and the problem.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Union

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_bytes
from safetensors.torch import load_file, save_file

from . import atomic
from .config import ModelConfig
from .model import HookedFastWeightLM
from .text.hf_tokenizer import FILE_NAME as TOKENIZER_FILE
from .text.hf_tokenizer import HFTokenizer
from .text.tokenizer import tokenizer_from_json
from .text.vocabulary import task_vocabulary

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
FORMAT_NAME = "workbench"
FORMAT_VERSION = "1"
_READABLE_VERSIONS = ("1",)


class CheckpointError(ValueError):
    """A checkpoint could not be read; the message says which file and what is wrong."""


def save(model: HookedFastWeightLM, directory: Union[str, Path]) -> Path:
    """Write ``model`` to ``directory`` (created if needed, files replaced); returns the directory.

    Tensors are stored on the CPU, contiguous, in their own dtype; nothing is pickled.
    """
    if not isinstance(model, HookedFastWeightLM):
        raise TypeError(f"save expects a HookedFastWeightLM, got {type(model).__name__}")
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise CheckpointError(f"cannot save into {directory}: it is a file, not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    atomic.write_text(directory / CONFIG_FILE, model.cfg.to_json() + "\n")
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic.replacing(directory / WEIGHTS_FILE) as tmp:
        save_file(tensors, str(tmp), metadata={"format": FORMAT_NAME, "version": FORMAT_VERSION})
    tokenizer = getattr(model, "tokenizer", None)
    if isinstance(tokenizer, HFTokenizer):
        atomic.write_text(directory / TOKENIZER_FILE, tokenizer.to_json())
        _write_json(directory / _TOKENIZER_META, {"bos_token_id": tokenizer.bos_token_id})
    elif tokenizer is not None and getattr(tokenizer, "kind", None) in OWN_TOKENIZERS:
        atomic.write_text(directory / TOKENIZER_FILE, tokenizer.to_json())
    return directory


_TOKENIZER_META = "tokenizer_meta.json"


def _write_json(path: Path, data: dict) -> None:
    atomic.write_json(path, data)


OWN_TOKENIZERS = ("bytes", "bpe", "vocabulary")  # tokenizer.json written by our tokenizers' to_json


def _read_tokenizer(directory: Path):
    """The tokenizer saved next to a checkpoint: ``tokenizer.json`` (ours — bytes, BPE, a task vocabulary — or
    the Hugging Face format), else the vocabulary of the task its ``recipe.json`` names (synthetic tasks), or
    None."""
    path = directory / TOKENIZER_FILE
    if not path.is_file():
        return _task_tokenizer(directory)
    # a damaged tokenizer file (not UTF-8, nested too deeply, fields missing or of the wrong type) is one
    # CheckpointError, never a KeyError or RecursionError (tests/test_fuzz_checkpoints.py)
    try:
        kind = json.loads(path.read_text(encoding="utf-8")).get("kind")
    except (ValueError, AttributeError, RecursionError):
        kind = None
    try:
        if kind in OWN_TOKENIZERS:
            return tokenizer_from_json(path.read_text(encoding="utf-8"))
        meta_path = directory / _TOKENIZER_META
        bos = json.loads(meta_path.read_text()).get("bos_token_id") if meta_path.is_file() else None
        return HFTokenizer.from_file(path, bos_token_id=bos)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as e:
        raise CheckpointError(f"{path} is not a readable tokenizer ({type(e).__name__}: {e})") from None


def _task_tokenizer(directory: Path):
    """The vocabulary of the task named in ``recipe.json`` (None without one, or for a task without names)."""
    recipe = directory / "recipe.json"
    if not recipe.is_file():
        return None
    from .tasks import task_from_dict  # here: the tasks pull in pandas, which loading a model does not need

    try:
        task = json.loads(recipe.read_text()).get("task")
        return None if task is None else task_vocabulary(task_from_dict(task))
    except (ValueError, TypeError, AttributeError):  # a recipe we cannot read leaves the model without names
        return None


def load(directory: Union[str, Path], device: Union[str, torch.device] = "cpu") -> HookedFastWeightLM:
    """Read a checkpoint written by :func:`save` onto ``device``; raises :class:`CheckpointError`."""
    directory = Path(directory)
    if not directory.exists():
        raise CheckpointError(f"checkpoint directory {directory} does not exist")
    if not directory.is_dir():
        raise CheckpointError(f"{directory} is a file; pass the checkpoint directory that holds {CONFIG_FILE} "
                              f"and {WEIGHTS_FILE}")
    cfg_path, w_path = directory / CONFIG_FILE, directory / WEIGHTS_FILE
    for path in (cfg_path, w_path):
        if not path.is_file():
            raise CheckpointError(f"{path} is missing: a checkpoint needs {CONFIG_FILE} and {WEIGHTS_FILE}")
    cfg = config_from_text(cfg_path.read_bytes(), str(cfg_path))
    try:
        tensors = load_file(str(w_path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{w_path} is not a readable safetensors file ({e})") from None
    with open(w_path, "rb") as f:
        _check_format(f.read(_header_size(f.read(8))), str(w_path))
    model = model_from_tensors(cfg, tensors, str(w_path), device)
    model.tokenizer = _read_tokenizer(directory)
    return model


def load_from_bytes(
    config: Union[str, bytes, Mapping[str, Any], ModelConfig],
    weights: bytes,
    device: Union[str, torch.device] = "cpu",
) -> HookedFastWeightLM:
    """Build a model from an uploaded ``config.json`` (text, bytes, dict or ModelConfig) and the bytes of
    ``model.safetensors``; the same checks as :func:`load`."""
    if isinstance(config, ModelConfig):
        cfg = config
    elif isinstance(config, Mapping):
        try:
            cfg = ModelConfig.from_dict(dict(config))
        except (ValueError, TypeError) as e:
            raise CheckpointError(f"{CONFIG_FILE}: {e}") from None
    elif isinstance(config, (str, bytes)):
        cfg = config_from_text(config)
    else:
        raise TypeError(f"config must be JSON text, bytes, a dict or a ModelConfig, got {type(config).__name__}")
    if not isinstance(weights, (bytes, bytearray)):
        raise TypeError(f"weights must be the bytes of {WEIGHTS_FILE}, got {type(weights).__name__}")
    try:
        tensors = load_bytes(bytes(weights))
    except (SafetensorError, OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise CheckpointError(f"{WEIGHTS_FILE} is not a readable safetensors file ({e})") from None
    _check_format(weights[8: 8 + _header_size(weights[:8])], WEIGHTS_FILE)
    return model_from_tensors(cfg, tensors, WEIGHTS_FILE, device)


# ---------------------------------------------------------------------- the checks, shared by both loaders
def config_from_text(text: Union[str, bytes], where: str = CONFIG_FILE) -> ModelConfig:
    """Parse ``config.json`` text; any problem becomes a CheckpointError that names ``where``."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise CheckpointError(f"{where} is not UTF-8 text; it should be the JSON written by save()") from None
    try:
        return ModelConfig.from_json(text)
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{where}: {e}") from None


def model_from_tensors(cfg: ModelConfig, tensors: dict[str, torch.Tensor], where: str = WEIGHTS_FILE,
                       device: Union[str, torch.device] = "cpu") -> HookedFastWeightLM:
    """A model for ``cfg`` holding exactly ``tensors``: names, shapes and float dtypes must all match.

    Returned in eval mode, as TransformerLens and transformers return a loaded model (call ``.train()`` to
    train it further): every loader (:func:`load`, :func:`load_from_bytes`, ``from_pretrained``) goes
    through here."""
    held = sum(t.numel() for t in tensors.values())
    if cfg.min_params > held:  # refused before anything is built: an absurd config allocates nothing
        raise CheckpointError(
            f"{where} holds {held:,} numbers, but its config (d_vocab={cfg.d_vocab}, d_model={cfg.d_model}, "
            f"n_layers={cfg.n_layers}, n_ctx={cfg.n_ctx}) describes a model of at least {cfg.min_params:,} "
            "parameters: the config and the weights do not belong together")
    with torch.device("meta"):  # names and shapes first, nothing allocated: a mis-sized config costs nothing
        shapes = HookedFastWeightLM(cfg, init=False)
    expected = shapes.state_dict()
    tensors = {**_added_since_saved(shapes, set(tensors), expected), **tensors}
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing tensors {missing}")
        if unexpected:
            parts.append(f"unexpected tensors {unexpected}")
        raise CheckpointError(f"{where} does not match its config: " + "; ".join(parts)
                              + "; was it saved from a model with a different config?")
    for name, t in tensors.items():
        if tuple(t.shape) != tuple(expected[name].shape):
            raise CheckpointError(
                f"{where}: tensor {name!r} has shape {tuple(t.shape)}, the config needs {tuple(expected[name].shape)}"
            )
        if expected[name].is_floating_point() and not t.is_floating_point():
            raise CheckpointError(f"{where}: tensor {name!r} has dtype {t.dtype}, expected a floating-point dtype")
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise CheckpointError(f"{where}: tensor {name!r} holds {bad:,} NaN or infinite values of {t.numel():,}; "
                                  "the weights are corrupt (or saved from a diverged run)")
    model = HookedFastWeightLM(cfg, init=False)  # every parameter is loaded below (strict)
    model.load_state_dict(tensors, strict=True)
    return model.to(device).eval()


def _added_since_saved(model: HookedFastWeightLM, present: set[str], expected: dict[str, torch.Tensor]
                       ) -> dict[str, torch.Tensor]:
    """Parameters added after a checkpoint format was in use, with the values that reproduce the old model,
    as each mixer declares them (``Mixer.added_since_saved``); only when none of them is present."""
    added = {f"blocks.{i}.attn.{leaf}": value for i, block in enumerate(model.blocks) if block.has_mixer
             for leaf, value in block.attn.added_since_saved().items()}
    if not added or any(name in present for name in added):
        return {}
    return {name: torch.full(expected[name].shape, value, dtype=expected[name].dtype) for name, value in added.items()}


def _header_size(first8: bytes) -> int:
    """A safetensors file starts with the length of its JSON header as a little-endian u64."""
    return int.from_bytes(first8, "little") if len(first8) == 8 else 0


def _check_format(header: bytes, where: str) -> None:
    """Refuse a file written by a newer workbench format (files without our metadata are accepted)."""
    try:
        meta = json.loads(header).get("__metadata__") or {}
    except (ValueError, AttributeError):
        meta = {}  # the tensors were readable, so safetensors accepted this header
    if meta.get("format") == FORMAT_NAME and meta.get("version") not in _READABLE_VERSIONS:
        raise CheckpointError(
            f"{where} has workbench format version {meta.get('version')!r}; this version of workbench reads "
            f"{list(_READABLE_VERSIONS)}: upgrade workbench to load it"
        )
