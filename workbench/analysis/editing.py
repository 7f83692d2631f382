"""Edit a head's fast-weight memory: insert or overwrite an association, then run the rest of the sequence.

The loaded model is never changed: edits live only inside one run (``expose_states`` + a hook).
"""

from __future__ import annotations

from typing import Optional, Union

import torch
from jaxtyping import Float

from ..mixers import NotDefinedForMixer
from .layer_inputs import fast_weight_mixer


def rank_one_edit(
    state: Float[torch.Tensor, "*batch d_k d_v"],
    key: Float[torch.Tensor, "*batch d_k"],
    value: Float[torch.Tensor, "*batch d_v"],
    strength: float = 1.0,
) -> Float[torch.Tensor, "*batch d_k d_v"]:
    """W' = W + s · k (v* − Wᵀk)ᵀ / ‖k‖²: with s = 1 the memory returns exactly v* for k (W'ᵀk = v*),
    and is unchanged for keys orthogonal to k. For unit keys this is the delta-rule write with β = s."""
    k = key.float()
    err = value.float() - torch.einsum("...kv,...k->...v", state.float(), k)
    return state + strength * k[..., :, None] * err[..., None, :] / (k * k).sum(-1)[..., None, None]


def patch_fast_weights(model, tokens, layer: int, position: int, edit, mode: str = "carry",
                       return_cache: bool = False):
    """Run ``model`` on ``tokens`` with W of ``layer`` at ``position`` replaced by ``edit(W)``.

    ``edit`` maps the state ``[batch, head, d_k, d_v]`` to a new one (or is that tensor). ``mode``:
    "carry" (later positions are recomputed from the edited state) or "readout" (only the output at
    ``position`` changes). Returns logits, or ``(logits, cache)`` with ``return_cache``.
    """
    fast_weight_mixer(model, layer)
    layer = layer % model.cfg.n_layers

    def hook(states: torch.Tensor, hook) -> torch.Tensor:  # [batch, 1, head, d_k, d_v]
        new = edit(states[:, 0].clone()) if callable(edit) else edit
        if not isinstance(new, torch.Tensor) or new.shape != states[:, 0].shape:
            got = tuple(new.shape) if isinstance(new, torch.Tensor) else type(new).__name__
            raise ValueError(f"the edited state must have shape {tuple(states[:, 0].shape)}, got {got}")
        return new.to(states.dtype)[:, None]

    with model.expose_states([position], mode=mode, layers=[layer]):
        hooks = [(f"blocks.{layer}.attn.hook_state", hook)]
        if return_cache:
            with model.hooks(fwd_hooks=hooks):
                return model.run_with_cache(tokens)
        return model.run_with_hooks(tokens, fwd_hooks=hooks)


def edit_association(
    model, tokens, layer: int, position: int, key: torch.Tensor, value: torch.Tensor,
    head: Optional[int] = None, strength: Union[float, torch.Tensor] = 1.0, mode: str = "carry",
    return_cache: bool = False,
):
    """Write the association key → value into the memory of ``layer`` right after ``position``.

    key ``[d_k]`` and value ``[d_v]`` for one ``head``, or ``[head, d_k]`` / ``[head, d_v]`` for all
    heads (``head=None``). Uses :func:`rank_one_edit`, so with strength 1 the edited memory returns
    ``value`` for ``key`` exactly. Returns the logits of the edited run (or ``(logits, cache)``); the
    model itself is untouched.
    """
    attn = fast_weight_mixer(model, layer)
    if (why := attn.key_value_state()) is not None:
        raise NotDefinedForMixer(f"an association edit writes key → value into a [d_k, d_v] state; layer {layer} "
                                 f"({attn.label(attn.cfg)}) has none: {why}")
    n_heads = model.cfg.n_heads
    d_k, d_v = attn.d_k, attn.d_v
    if head is not None and not (isinstance(head, int) and 0 <= head < n_heads):
        raise ValueError(f"head must be an int in [0, {n_heads - 1}] or None, got {head!r}")
    want_k = (d_k,) if head is not None else (n_heads, d_k)
    want_v = (d_v,) if head is not None else (n_heads, d_v)
    if tuple(key.shape) != want_k:
        raise ValueError(f"key must have shape {want_k} (d_k = {d_k}), got {tuple(key.shape)}")
    if tuple(value.shape) != want_v:
        raise ValueError(f"value must have shape {want_v}, got {tuple(value.shape)}")

    def edit(state: torch.Tensor) -> torch.Tensor:  # [batch, head, d_k, d_v]
        if head is None:
            return rank_one_edit(state, key.to(state), value.to(state), strength)
        out = state.clone()
        out[:, head] = rank_one_edit(state[:, head], key.to(state), value.to(state), strength)
        return out

    return patch_fast_weights(model, tokens, layer, position, edit, mode=mode, return_cache=return_cache)
