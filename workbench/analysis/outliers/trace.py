"""Outlier statistics of every layer and hook site of a ``HookedFastWeightLM`` over a token stream.

Hooks update one :class:`~.stats.OutlierStats` per hook as each batch passes, so nothing but the
sufficient statistics is kept. Sites (``{i}`` the block):

  resid_pre / resid_mid / resid_post   blocks.{i}.hook_resid_*        [batch, pos, d_model]
  attn_out / mlp_out                   blocks.{i}.hook_attn_out / hook_mlp_out
  mlp_hidden                           blocks.{i}.mlp.hook_post       [batch, pos, d_mlp]
  q / k / v / z / delta                blocks.{i}.attn.hook_*         [batch, pos, head, d] → width head·d

Per-head sites are flattened head-major: neuron n is (head n // d, channel n % d).
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from .stats import OutlierStats

SITE_HOOKS = {
    "resid_pre": "blocks.{i}.hook_resid_pre",
    "resid_mid": "blocks.{i}.hook_resid_mid",
    "resid_post": "blocks.{i}.hook_resid_post",
    "attn_out": "blocks.{i}.hook_attn_out",
    "mlp_out": "blocks.{i}.hook_mlp_out",
    "mlp_hidden": "blocks.{i}.mlp.hook_post",
    "q": "blocks.{i}.attn.hook_q",
    "k": "blocks.{i}.attn.hook_k",
    "v": "blocks.{i}.attn.hook_v",
    "z": "blocks.{i}.attn.hook_z",
    "delta": "blocks.{i}.attn.hook_delta",
}
DEFAULT_SITES = ("resid_post", "attn_out", "mlp_out", "mlp_hidden", "q", "k", "v")
PER_HEAD = ("q", "k", "v", "z", "delta")


def head_width(cfg, site: str, width: int) -> Optional[int]:
    """Channels per head of a per-head site of ``width`` channels (head-major); None for the others."""
    return width // cfg.n_heads if site in PER_HEAD else None


def site_width(model, name: str) -> int:
    """Channels of the activation at hook ``name`` (per-head sites flattened): asked of the mixer's d_k / d_v."""
    cfg = model.cfg
    layer, site = parse_hook(name)
    if site in PER_HEAD:
        return cfg.n_heads * (model.blocks[layer].attn.d_k if site in ("q", "k") else cfg.d_head)
    return cfg.d_mlp if site == "mlp_hidden" else cfg.d_model


def parse_hook(name: str) -> tuple[int, str]:
    """``blocks.3.attn.hook_k`` → (3, "k")."""
    parts = name.split(".")
    for site, pattern in SITE_HOOKS.items():
        if pattern.split(".")[2:] == parts[2:] and parts[0] == "blocks":
            return int(parts[1]), site
    raise ValueError(f"{name!r} is not one of the traced hook sites {sorted(SITE_HOOKS)}")


def site_hooks(model, sites: Sequence[str] = DEFAULT_SITES, layers: Optional[Sequence[int]] = None) -> list[str]:
    """The hook names of ``sites`` at ``layers`` (all by default) that exist in this model."""
    unknown = sorted(set(sites) - set(SITE_HOOKS))
    if unknown:
        raise ValueError(f"unknown sites {unknown}; choose from {sorted(SITE_HOOKS)}")
    n = model.cfg.n_layers
    layers = range(n) if layers is None else layers
    names = []
    for i in layers:
        if not isinstance(i, int) or not 0 <= i < n:
            raise ValueError(f"layer {i!r} is not in [0, {n - 1}]")
        names += [SITE_HOOKS[s].format(i=i) for s in sites if SITE_HOOKS[s].format(i=i) in model.hook_dict]
    if not names:
        raise ValueError(f"none of the sites {list(sites)} exists in this model (mixer {model.cfg.mixer_label}, "
                         f"mlp {model.cfg.mlp!r})")
    return names


@torch.no_grad()
def trace_outliers(model, batches: Iterable[torch.Tensor], sites: Sequence[str] = DEFAULT_SITES,
                   layers: Optional[Sequence[int]] = None, top_k: int = 8, progress: bool = True
                   ) -> dict[str, OutlierStats]:
    """Streaming outlier statistics of ``sites`` at ``layers`` over token ``batches`` (``[batch, pos]`` each).

    Returns ``{hook name: OutlierStats}`` (mergeable, see :func:`.distributed.all_reduce_stats`);
    tabulate with :func:`outlier_table` and :func:`top_neurons`. The model is not changed.
    """
    names = site_hooks(model, sites, layers)
    stats: dict[str, OutlierStats] = {}

    def record(act: torch.Tensor, hook) -> None:  # sized by the activation (an SRWM's hook_v is wider than d_head)
        flat = act.reshape(act.shape[0], act.shape[1], -1)
        stats.setdefault(hook.name, OutlierStats(flat.shape[-1], top_k=top_k)).update(flat)

    total = len(batches) if hasattr(batches, "__len__") else None
    for tokens in tqdm(batches, total=total, desc="tracing outliers", disable=not progress):
        model.run_with_hooks(tokens, return_type=None, fwd_hooks=[(n, record) for n in names])
    return {n: stats[n] if n in stats else OutlierStats(site_width(model, n), top_k=top_k) for n in names}


def outlier_table(stats: dict[str, OutlierStats]) -> pd.DataFrame:
    """One row per hook: ``layer, site, hook, n_tokens, kurtosis, max_median_ratio, max_abs, n_massive,
    massive_token_fraction, signal_propagation, top_ratio`` (the largest |x| / median of its token)."""
    rows = []
    for name, s in stats.items():
        layer, site = parse_hook(name)
        r = s.result().to_dict()
        top = r.pop("top_ratio")
        rows.append({"layer": layer, "site": site, "hook": name, **r, "top_ratio": top[0] if top else float("nan")})
    return pd.DataFrame(rows).sort_values(["layer", "site"], kind="stable").reset_index(drop=True)


def top_neurons(stats: dict[str, OutlierStats], cfg, n: int = 5) -> pd.DataFrame:
    """The ``n`` neurons of largest RMS at each hook (see :meth:`OutlierStats.neurons`), with ``layer, site,
    hook`` and, for per-head sites, ``head`` and ``channel``."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    parts = []
    for name, s in stats.items():
        layer, site = parse_hook(name)
        df = s.neurons(group=head_width(cfg, site, s.width)).head(n)
        df.insert(0, "hook", name)
        df.insert(0, "site", site)
        df.insert(0, "layer", layer)
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def hot_channels(stats: dict[str, OutlierStats], cfg, sites: Sequence[str] = ("k", "v"), n: int = 3) -> pd.DataFrame:
    """"Hot" key/value channels: per layer, site and head, the ``n`` channels with the largest
    ``head_ratio`` = RMS / median RMS of that head's channels (scale-free within each head)."""
    bad = [s for s in sites if s not in PER_HEAD]
    if bad:
        raise ValueError(f"hot channels are per head; sites must be among {PER_HEAD}, got {bad}")
    parts = []
    for name, s in stats.items():
        layer, site = parse_hook(name)
        if site not in sites:
            continue
        df = s.neurons(group=head_width(cfg, site, s.width))
        df["head_ratio"] = df.rms / df.groupby("head").rms.transform("median")
        df = df.sort_values(["head", "head_ratio"], ascending=[True, False], kind="stable").groupby("head").head(n)
        df.insert(0, "site", site)
        df.insert(0, "layer", layer)
        parts.append(df)
    if not parts:
        raise ValueError(f"no traced hook is one of the sites {list(sites)}; trace them first "
                         f"(trace_outliers(..., sites={tuple(sites)}))")
    return pd.concat(parts, ignore_index=True)
