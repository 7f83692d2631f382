"""One path knockout: block what ``sources`` write in ``layer`` (one head, or all) from being read at ``targets``.

Two exact routes, both ending in the same splice — the clean run with the head's read-out ``hook_z`` replaced
at the target positions only, so every other position, head and layer is the clean run's:

  - ``"attention"`` (mixers whose output is linear in the values, ``hook_z = A · hook_v``):
    z'_t = z_t − Σ_{s ∈ sources} A[t, s] v_s = Σ_{s ∉ sources} A[t, s] v_s (the shorter sum is taken), A the
    layer's exact effective attention (float32, as ``model.effective_attention`` gives it)
    (``model.effective_attention``; mamba-knockout's zero-attention knockout, here exact for the delta rule too);
  - ``"rerun"`` (every fast-weight mixer): the layer's recurrence re-run without the sources' writes
    (:mod:`workbench.mixers.knockout`; the mixer says what its writes are, ``Mixer.knockout_inputs``), read at
    the targets. On a mixer linear in its values it zeroes the values v_s, so it equals the attention route.

``"auto"`` takes the attention route where the effective attention is defined, else the re-run. The model is
never changed; hooks live only inside each call.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
from jaxtyping import Float

from ...mixers import NotDefinedForMixer, check_positions
from ...mixers.knockout import knocked_out

ROUTES = ("auto", "attention", "rerun")
Heads = Optional[Union[int, Sequence[int]]]


def check_route(route: str) -> str:
    if route not in ROUTES:
        raise ValueError(f"route must be one of {ROUTES}, got {route!r}")
    return route


def resolve_heads(model, head: Heads) -> list[int]:
    n = model.cfg.n_heads
    heads = list(range(n)) if head is None else [head] if isinstance(head, int) else list(head)
    for h in heads:
        if not isinstance(h, int) or isinstance(h, bool) or not 0 <= h < n:
            raise ValueError(f"head must be an int in [0, {n - 1}] (or None: every head), got {h!r}")
    return heads


def positions_or_empty(positions, n_pos: int) -> list[int]:
    """Positions as sorted distinct ints in [0, n_pos); an empty list stays empty (a knockout of nothing)."""
    if positions is None:
        return list(range(n_pos))
    if isinstance(positions, (list, tuple)) and len(positions) == 0:
        return []
    return sorted(set(check_positions(positions, n_pos)))


def pick_route(model, tokens, layer: int, route: str) -> str:
    """The route ``"auto"`` resolves to on this layer (``attention`` where A is defined, else ``rerun``)."""
    check_route(route)
    if route != "auto":
        return route
    attn = model.mixer(layer)
    try:
        model.effective_attention(tokens[:1, :2], layer)
        return "attention"
    except NotDefinedForMixer:
        if not attn.has_fast_weights:
            raise
        return "rerun"


@torch.no_grad()
def clean_parts(model, tokens, layer: int, route: str) -> dict[str, torch.Tensor]:
    """What every knockout of ``layer`` on ``tokens`` starts from: the clean ``z`` (hook_z), and for the attention
    route ``v`` (hook_v) and ``A`` (the effective attention). Compute once, pass to :func:`knocked_readout`."""
    clean = model.layer_cache(tokens, layer, ["hook_z", "hook_v"])
    parts = {"z": clean("hook_z")}
    if route == "attention":
        attn = model.mixer(layer)
        if clean("hook_v") is None:
            raise NotDefinedForMixer(f"layer {layer} ({attn.label(attn.cfg)}) has no hook_v to knock out through "
                                     "its effective attention; use route='rerun'")
        parts.update(v=clean("hook_v"), A=model.effective_attention(tokens, layer))  # A: [batch, head, pos, pos]
    return parts


@torch.no_grad()
def knocked_readout(model, tokens, layer: int, head: Heads, sources, route: str = "auto",
                    parts: Optional[dict] = None) -> Float[torch.Tensor, "batch pos head d_v"]:
    """The read-out ``hook_z`` of ``layer`` at every position when the ``sources``' writes are removed for
    ``head`` (None: every head, each knocked out on its own); the other heads keep the clean read-out.
    ``parts``: :func:`clean_parts` of this layer, tokens and route, when computed already."""
    tokens = model.check_tokens(tokens)
    layer = layer % model.cfg.n_layers
    heads = resolve_heads(model, head)
    src = positions_or_empty(sources, tokens.shape[1])
    route = pick_route(model, tokens, layer, route)
    attn = model.mixer(layer)
    parts = clean_parts(model, tokens, layer, route) if parts is None else parts
    z = parts["z"].clone()
    if not src or not heads:
        return z
    if route == "attention":
        A, v = parts["A"], parts["v"]
        kept = [s for s in range(tokens.shape[1]) if s not in set(src)]
        for h in heads:  # the shorter of two equal sums, so that A's float32 rounding stays small:
            if len(kept) < len(src):  # z'_t = Σ_{s ∉ sources} A[t, s] v_s (exactly 0 with every source out)
                z[:, :, h] = torch.einsum("bts,bsd->btd", A[:, h][:, :, kept].to(v.dtype), v[:, kept, h]).to(z.dtype)
            else:  # z'_t = z_t − Σ_{s ∈ sources} A[t, s] v_s (exactly z_t where A[t, sources] = 0: t < s)
                taken = torch.einsum("bts,bsd->btd", A[:, h][:, :, src].to(v.dtype), v[:, src, h])
                z[:, :, h] = z[:, :, h] - taken.to(z.dtype)
        return z
    if not attn.has_fast_weights:
        raise NotDefinedForMixer(f"layer {layer} ({attn.label(attn.cfg)}) keeps no fast-weight memory to re-run; "
                                 "use route='attention'")
    for h in heads:
        with knocked_out(attn, src, h):
            z[:, :, h] = model.layer_cache(tokens, layer, ["hook_z"])("hook_z")[:, :, h]
    return z


def splice_hook(layer: int, z_new: torch.Tensor, targets: list[int], heads: list[int]):
    """A forward hook replacing ``hook_z`` of ``layer`` at ``targets`` and ``heads`` by ``z_new``'s."""

    def hook(z: torch.Tensor, hook) -> torch.Tensor:
        out = z.clone()
        for h in heads:
            out[:, targets, h] = z_new[:, targets, h].to(z.dtype)
        return out

    return (f"blocks.{layer}.attn.hook_z", hook)


@torch.no_grad()
def knock_out(model, tokens, layer: int, head: Heads, sources, targets, route: str = "auto"
              ) -> Float[torch.Tensor, "batch pos vocab"]:
    """Logits of ``model`` on ``tokens`` with what ``sources`` write in ``layer`` blocked from being read at
    ``targets``, for ``head`` (an int, a list, or None: every head). Positions: ints, lists (negative from
    the end) or None (every position); an empty list knocks out nothing (the clean logits). ``route``:
    "auto", "attention" or "rerun" (module docstring). Raises NotDefinedForMixer where a route does not apply."""
    tokens = model.check_tokens(tokens)
    layer = layer % model.cfg.n_layers
    heads = resolve_heads(model, head)
    tgt = positions_or_empty(targets, tokens.shape[1])
    src = positions_or_empty(sources, tokens.shape[1])
    if not tgt or not src:
        return model(tokens)
    z_new = knocked_readout(model, tokens, layer, heads, src, route)
    return model.run_with_hooks(tokens, fwd_hooks=[splice_hook(layer, z_new, tgt, heads)])
