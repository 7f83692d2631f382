"""The linear layers K-FAC can see, each with the hooks that hold its exact input and output.

A *site* is a weight used as ``y = a W (+ b)`` on every token. K-FAC works with the flat matrix
``W_flat [d_in, d_out]`` (``y = a W_flat``); heads are flattened head-major, so for W_Q
``[head, d_model, d_head]`` the output index is ``head·d_head + d``, matching
``hook_q.reshape(…, head·d_head)``; for W_O ``[head, d_head, d_model]`` the input index is the same.

    kind    parameter            input hook (a)                       output hook (y)
    mlp_in  blocks.{i}.mlp.W_in   MLP input (ln2 output)               mlp.hook_pre (SwiGLU: mlp.hook_pre_linear)
    mlp_gate blocks.{i}.mlp.W_gate MLP input                           mlp.hook_pre              (SwiGLU only)
    mlp_out blocks.{i}.mlp.W_out  mlp.hook_post                        hook_mlp_out
    (mixer) blocks.{i}.attn.*     as the mixer lists them (``Mixer.linear_sites``), e.g.
    q, k, v blocks.{i}.attn.W_Q…  mixer input (ln1 output)             softmax: hook_q/k/v; linear: hook_q_pre,
                                                                       hook_k_pre, hook_v; delta: hook_*_pre
    beta    blocks.{i}.attn.W_beta mixer input                         attn.hook_beta_pre        (delta mixers)
    o       blocks.{i}.attn.W_O   softmax/linear: hook_z; delta: hook_o_in    hook_attn_out

Without norms the MLP / mixer input is ``hook_resid_mid`` / ``hook_resid_pre`` (the norm is the identity; an
MLP-only block's MLP reads ``hook_resid_pre``). A block lists only the sites of the branches it has
(``cfg.block_kinds``: a mixer-only block no MLP sites, an MLP-only block no mixer sites).
Biases do not change output gradients, so hooks after a bias add are exact for ``g = ∂L/∂y``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

KINDS = ("mlp_in", "mlp_gate", "mlp_out", "q", "k", "v", "o", "beta")
LAYOUTS = ("in_out", "head_in_out", "head_out")


@dataclass(frozen=True)
class LinearSite:
    """One linear layer: ``param`` (e.g. ``"blocks.1.mlp.W_in"``), the hooks holding its input ``a`` and
    output ``y`` exactly, its sizes, and ``layout`` of the parameter: ``"in_out"`` ``[d_in, d_out]``,
    ``"head_in_out"`` ``[head, d_in, d_head]`` (d_out = head·d_head) or ``"head_out"``
    ``[head, d_head, d_out]`` (d_in = head·d_head)."""

    param: str
    kind: str
    layer: int
    input_hook: str
    output_hook: str
    d_in: int
    d_out: int
    layout: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _sites_of_block(model, i: int) -> list[LinearSite]:
    cfg = model.cfg
    block = model.blocks[i]
    pre = f"blocks.{i}."
    hooks = model.hook_dict
    attn_in = pre + ("ln1.hook_normalized" if pre + "ln1.hook_normalized" in hooks else "hook_resid_pre")
    mlp_in = pre + ("ln2.hook_normalized" if pre + "ln2.hook_normalized" in hooks
                    else "hook_resid_mid" if block.has_mixer else "hook_resid_pre")  # an MLP-only block: no resid_mid
    # a post-norm layer (cfg.post_norm_layers) normalises W_O's and W_out's outputs before hook_attn_out /
    # hook_mlp_out, so those two outputs are not hooked: their sites are left out
    post = i in cfg.post_norm_layers
    out: list[LinearSite] = []
    mixer_sites = block.attn.linear_sites() if block.has_mixer else []  # a block may hold an MLP only
    for s in mixer_sites:  # the mixer lists its own linear layers (names relative to it)
        if post and s.output_hook is None:
            continue
        out.append(LinearSite(f"{pre}attn.{s.param}", s.kind, i,
                              attn_in if s.input_hook is None else f"{pre}attn.{s.input_hook}",
                              pre + "hook_attn_out" if s.output_hook is None else f"{pre}attn.{s.output_hook}",
                              s.d_in, s.d_out, s.layout))
    if block.has_mlp and cfg.moe_at(i) is None:  # a mixture-of-experts MLP's experts are not K-FAC sites
        swiglu = cfg.mlp == "swiglu"
        out.append(LinearSite(f"{pre}mlp.W_in", "mlp_in", i, mlp_in,
                              pre + ("mlp.hook_pre_linear" if swiglu else "mlp.hook_pre"), cfg.d_model, cfg.d_mlp,
                              "in_out"))
        if swiglu:
            out.append(LinearSite(f"{pre}mlp.W_gate", "mlp_gate", i, mlp_in, pre + "mlp.hook_pre", cfg.d_model,
                                  cfg.d_mlp, "in_out"))
        if not post:
            out.append(LinearSite(f"{pre}mlp.W_out", "mlp_out", i, pre + "mlp.hook_post", pre + "hook_mlp_out",
                                  cfg.d_mlp, cfg.d_model, "in_out"))
    return out


def linear_sites(model, layers: Optional[Sequence[int]] = None, kinds: Optional[Sequence[str]] = None
                 ) -> list[LinearSite]:
    """The model's K-FAC sites, block by block; ``layers`` and ``kinds`` (see ``KINDS``) filter them."""
    n = model.cfg.n_layers
    chosen = range(n) if layers is None else layers
    for i in chosen:
        if not isinstance(i, int) or isinstance(i, bool) or not -n <= i < n:
            raise ValueError(f"layers must be ints in [0, {n - 1}], got {i!r}")
    sites = [s for i in sorted({i % n for i in chosen}) for s in _sites_of_block(model, i)]
    if kinds is not None:
        known = list(dict.fromkeys([*KINDS, *(s.kind for s in sites)]))
        bad = sorted(set(kinds) - set(known))
        if bad:
            raise ValueError(f"unknown site kinds {bad}; choose from {known}")
    return [s for s in sites if kinds is None or s.kind in kinds]


def resolve_sites(model, sites) -> list[LinearSite]:
    """``sites``: None (every site), parameter names, or :class:`LinearSite` s → the matching sites."""
    every = {s.param: s for s in linear_sites(model)}
    if sites is None:
        return list(every.values())
    if isinstance(sites, (str, LinearSite)):
        sites = [sites]
    out = []
    for s in sites:
        name = s.param if isinstance(s, LinearSite) else s
        if name not in every:
            raise ValueError(f"{name!r} is not a linear layer K-FAC can see in this model; "
                             f"choose from {sorted(every)}")
        out.append(every[name])
    if len({s.param for s in out}) != len(out):
        raise ValueError("a site is listed twice; list each parameter once")
    return out


def flat_weight(model, site: LinearSite) -> torch.Tensor:
    """``W_flat [d_in, d_out]`` of the site with ``y = a W_flat`` (a copy for head layouts)."""
    W = model.get_parameter(site.param)
    if site.layout == "head_in_out":  # [head, d_in, d_head] -> [d_in, head·d_head]
        return W.permute(1, 0, 2).reshape(site.d_in, site.d_out)
    if site.layout == "head_out":  # [head, d_head, d_out] -> [head·d_head, d_out]
        return W.reshape(site.d_in, site.d_out)
    return W


def unflatten_weight(site: LinearSite, W_flat: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`flat_weight`: ``W_flat [d_in, d_out]`` back to the parameter's ``shape``."""
    if tuple(W_flat.shape) != (site.d_in, site.d_out):
        raise ValueError(f"{site.param}: expected a [{site.d_in}, {site.d_out}] matrix, got {tuple(W_flat.shape)}")
    if site.layout == "head_in_out":
        h, d_in, dh = shape
        return W_flat.reshape(d_in, h, dh).permute(1, 0, 2).contiguous()
    return W_flat.reshape(tuple(shape)).contiguous()


def write_weight(new_model, site: LinearSite, W: torch.Tensor, W_new: torch.Tensor, info: dict) -> float:
    """Write the edited ``W_new`` ([d_out, d_in], float64) of ``site`` into ``new_model`` when any component
    was dropped; returns the relative change ‖W_new − W‖ / ‖W‖ (0.0 when nothing was dropped)."""
    if info["kept"] >= info["components"]:
        return 0.0
    p = new_model.get_parameter(site.param)
    with torch.no_grad():
        p.copy_(unflatten_weight(site, W_new.T.to(p.dtype), p.shape))
    return float((W_new - W.double()).norm() / W.double().norm().clamp_min(1e-300))
