"""Converters by ``model_type``: one module per source architecture registers one converter each.

    @register_converter("delta_net")
    def convert(config: SourceConfig, tensors: Tensors) -> tuple[ModelConfig, dict[str, torch.Tensor]]: ...

A converter reads the source's ``config.json`` through :class:`~.source_config.SourceConfig` (every key
it reproduces, ignores or refuses is named there, so nothing is silently dropped) and takes each source
tensor it maps from :class:`~.tensors.Tensors` (a tensor left untaken is an error). The loader
(:func:`workbench.pretrained.from_pretrained`) looks the converter up here and never switches on an
architecture itself.
"""

from __future__ import annotations

import importlib
from typing import Callable

Converter = Callable[..., tuple]

_CONVERTERS: dict[str, Converter] = {}

# the modules that register converters; importing one registers its model_types
_MODULES = ("fla_delta_net", "fla_gated_deltanet", "fla_gla", "hf_qwen3_5", "hf_olmo_hybrid", "hf_qwen3_next", "hf_kimi_linear", "hf_mamba2",
            "hf_nemotron_h")


def register_converter(*model_types: str) -> Callable[[Converter], Converter]:
    def wrap(fn: Converter) -> Converter:
        for model_type in model_types:
            _CONVERTERS[model_type] = fn
        return fn

    return wrap


def _load_all() -> None:
    for name in _MODULES:
        importlib.import_module(f"{__package__}.{name}")


def model_types() -> list[str]:
    """The source ``model_type`` values :func:`~workbench.pretrained.from_pretrained` opens."""
    _load_all()
    return sorted(_CONVERTERS)


def converter_for(model_type) -> Converter:
    _load_all()
    if model_type not in _CONVERTERS:
        raise ValueError(f"config.json has model_type {model_type!r}, which workbench cannot open yet; it opens "
                         f"{sorted(_CONVERTERS)} (docs/pretrained.md says what each supports)")
    return _CONVERTERS[model_type]
