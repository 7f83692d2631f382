"""Outlier statistics of any torch model through nnsight: no hooks of ours, just module paths.

A site is a module path of the wrapped model plus ``:input`` (its first positional input) or
``:output`` (the default; the first element when a module returns a tuple), e.g. for a transformers
GPT-2 ``"transformer.h.3:input"`` is the residual stream entering block 3 and
``"transformer.h.3.mlp.act:output"`` the MLP hidden activation. Each batch runs once under
``model.trace``; the saved activations update one :class:`~.stats.OutlierStats` per site and are
dropped before the next batch.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch
from tqdm.auto import tqdm

from ..module_paths import module_at
from .stats import OutlierStats


def parse_site(spec: str) -> tuple[str, str]:
    """``"transformer.h.0:input"`` → ("transformer.h.0", "input"); no suffix means ``output``."""
    if not isinstance(spec, str) or not spec:
        raise ValueError(f"a site is 'module.path[:input|:output]', got {spec!r}")
    path, _, which = spec.partition(":")
    which = which or "output"
    if which not in ("input", "output"):
        raise ValueError(f"site {spec!r}: the suffix must be ':input' or ':output'")
    return path, which


def gpt2_sites(n_layers: int, prefix: str = "transformer") -> dict[str, str]:
    """Residual stream (entering each block, and after the final LayerNorm) and MLP hidden activation
    of a transformers GPT-2 with ``n_layers`` blocks, in execution order."""
    sites = {}
    for i in range(n_layers):
        sites[f"blocks.{i}.resid_pre"] = f"{prefix}.h.{i}:input"
        sites[f"blocks.{i}.mlp_hidden"] = f"{prefix}.h.{i}.mlp.act:output"
    sites["ln_final"] = f"{prefix}.ln_f:output"
    return sites


@torch.no_grad()
def trace_nnsight(model, batches: Iterable, sites: Mapping[str, str], top_k: int = 8, progress: bool = True
                  ) -> dict[str, OutlierStats]:
    """Streaming outlier statistics at ``sites`` (``{name: "module.path[:input|:output]"}``, in the order
    the model runs them) over ``batches`` (each passed to the model as its input, e.g. ``[batch, pos]``
    token ids). ``model`` is an ``nnsight.NNsight``/``LanguageModel`` or a plain ``torch.nn.Module``
    (wrapped here). Activations ``[batch, pos, …]`` are flattened to ``[batch, pos, width]``.
    Returns ``{name: OutlierStats}``, as :func:`.trace.trace_outliers` does for our models.
    """
    try:
        import nnsight
    except ImportError:
        raise ImportError("trace_nnsight needs nnsight: pip install nnsight") from None
    if not sites:
        raise ValueError("sites is empty; pass {name: 'module.path[:input|:output]'}")
    wrapped = model if isinstance(model, nnsight.NNsight) else nnsight.NNsight(model)
    parsed = {name: parse_site(spec) for name, spec in sites.items()}
    modules = {name: module_at(wrapped, path) for name, (path, _) in parsed.items()}
    stats: dict[str, OutlierStats] = {}
    total = len(batches) if hasattr(batches, "__len__") else None
    for batch in tqdm(batches, total=total, desc="tracing outliers (nnsight)", disable=not progress):
        saved = {}
        try:
            with wrapped.trace(batch):
                for name, (_, which) in parsed.items():
                    saved[name] = getattr(modules[name], which).save()
        except Exception as e:  # nnsight reads modules in execution order only
            if type(e).__name__ == "OutOfOrderError":
                raise ValueError(f"list the sites in the order the model runs them ({e})") from None
            raise
        for name, act in saved.items():
            act = act[0] if isinstance(act, (tuple, list)) else act
            if not isinstance(act, torch.Tensor) or act.dim() < 2:
                raise ValueError(f"site {name!r} gave {type(act).__name__} {getattr(act, 'shape', '')}; "
                                 "it must be an activation [batch, pos, ...]")
            act = act if act.dim() > 2 else act[:, :, None]
            X = act.reshape(act.shape[0], act.shape[1], -1)
            stats.setdefault(name, OutlierStats(X.shape[-1], top_k=top_k)).update(X)
    if not stats:
        raise ValueError("batches is empty; pass at least one model input")
    return stats
