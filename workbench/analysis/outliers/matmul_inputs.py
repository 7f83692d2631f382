"""Outlier statistics of what every matmul reads: the activations :func:`.quantize.quantize_w8a8` rounds.

In a pre-norm block the projections read the LayerNorm outputs (with their learned per-channel gains), not
the residual stream; in the Outlier Protected block they read the residual stream itself. He et al. (2024)
tie the W8A8 cost to the outliers *at the matmul inputs*, so this traces exactly the tensors that the
quantiser rounds (:func:`.quantize.activation_sites`), whatever the block and the mixer:

  attn_in      input of ``blocks.{i}.attn`` (what W_Q, W_K, W_V and the mixer's other projections read)
  o_in         what W_O reads (``hook_z``, or the mixer's ``hook_o_in``), heads flattened head-major
  mlp_in       input of ``blocks.{i}.mlp`` (what W_in, W_gate read)
  mlp_hidden   what W_out reads (``mlp.hook_post``)
  unembed_in   input of the unembedding (layer = n_layers)

The torch hooks live only for the call and are removed after it (also on error); the model is not changed.
"""

from __future__ import annotations

from typing import Iterable

import pandas as pd
import torch
from tqdm.auto import tqdm

from .quantize import activation_sites
from .stats import OutlierStats


def matmul_site(module_name: str, where: str, n_layers: int) -> tuple[int, str]:
    """``("blocks.2.attn", "input")`` → ``(2, "attn_in")``; the unembedding is layer ``n_layers``."""
    if module_name == "unembed":
        return n_layers, "unembed_in"
    parts = module_name.split(".")
    if parts[0] != "blocks" or len(parts) < 3:
        raise ValueError(f"{module_name!r} is not a block's matmul input")
    layer, rest = int(parts[1]), parts[2:]
    if rest == ["attn"] and where == "input":
        return layer, "attn_in"
    if rest[0] == "attn" and where == "output":
        return layer, "o_in"
    if rest == ["mlp"] and where == "input":
        return layer, "mlp_in"
    if rest == ["mlp", "hook_post"]:
        return layer, "mlp_hidden"
    raise ValueError(f"no matmul-input site is known for {module_name!r} ({where})")


@torch.no_grad()
def trace_matmul_inputs(model, batches: Iterable[torch.Tensor], top_k: int = 8, progress: bool = True
                        ) -> dict[str, OutlierStats]:
    """Streaming :class:`OutlierStats` of every matmul input of ``model`` over token ``batches``
    (``[batch, pos]`` each), keyed by ``"<module name>:<input|output>"``; tabulate with
    :func:`matmul_input_table`."""
    modules = dict(model.named_modules())
    sites = activation_sites(model)
    stats: dict[str, OutlierStats] = {}

    def record(key: str, x: torch.Tensor) -> None:
        x = x.detach().reshape(x.shape[0], x.shape[1], -1)
        if key not in stats:
            stats[key] = OutlierStats(x.shape[-1], top_k=top_k)
        stats[key].update(x)

    handles = []
    try:
        for name, where in sites.items():
            key = f"{name}:{where}"
            if where == "input":
                handles.append(modules[name].register_forward_pre_hook(
                    lambda m, args, key=key: record(key, args[0])))
            else:
                handles.append(modules[name].register_forward_hook(
                    lambda m, args, out, key=key: record(key, out)))
        batches = list(batches)
        for tokens in tqdm(batches, desc="tracing matmul inputs", disable=not progress):
            model(tokens)  # logits: the unembedding runs too
    finally:
        for h in handles:
            h.remove()
    if not stats:
        raise ValueError("no batch was traced; pass at least one [batch, pos] token tensor")
    return stats


def matmul_input_table(stats: dict[str, OutlierStats], n_layers: int) -> pd.DataFrame:
    """One row per matmul input: ``layer, site, module, n_tokens, kurtosis, max_median_ratio, max_abs,
    signal_propagation`` (and the other :class:`~.stats.OutlierSummary` fields but ``top_ratio``)."""
    rows = []
    for key, s in stats.items():
        name, where = key.rsplit(":", 1)
        layer, site = matmul_site(name, where, n_layers)
        r = s.result().to_dict()
        r.pop("top_ratio")
        rows.append({"layer": layer, "site": site, "module": name, **r})
    return pd.DataFrame(rows).sort_values(["layer", "site"], kind="stable").reset_index(drop=True)
