"""Residual and state steering together, and a state strength matched to a residual vector.

Paulo et al. (2024) report that steering the recurrent state *adds* to contrastive activation addition on the
residual stream. Comparing the two needs them (a) applied together in one forward and (b) on a common scale:

    combined:  h_L[t] ← h_L[t] + m · v            (residual, ``blocks.{L}.hook_{site}``)
               W_t   ← W_t   + m · s · D           (state of layer L, ``readout`` or ``carry``)
    matched s: mean over (sequence, steered position t) of ‖Δ attn_out_L[t]‖ at strength s  =  ‖v‖

``attn_out_L`` (``blocks.{L}.hook_attn_out``) is what layer L's mixer adds to the residual stream, so the matched
state steering moves the residual stream, where it is steered, by as much on average as the residual vector does
at multiplier 1. The mixer is asked through its hooks only (``expose_states`` and ``hook_attn_out``).
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import Iterator, Sequence

import torch
from jaxtyping import Float

from ...mixers import check_positions
from .residual import residual_steering
from .state import state_steering


@contextmanager
def combined_steering(model, layer: int, vector: torch.Tensor, direction: torch.Tensor, multiplier: float,
                      positions: Sequence[int], state_scale: float = 1.0, mode: str = "readout",
                      site: str = "resid_pre") -> Iterator[None]:
    """Inside this context every run of ``model`` is steered at ``positions`` both on the residual stream
    (``multiplier · vector`` at ``blocks.{layer}.hook_{site}``, :func:`residual_steering`) and in the state of
    ``layer`` (``multiplier · state_scale · direction``, :func:`state_steering` in ``mode``), in the same forward.
    A zero ``direction`` is residual steering alone; a zero ``vector`` is state steering alone."""
    positions = list(check_positions(positions, None))
    with ExitStack() as stack:
        stack.enter_context(residual_steering(model, layer, vector, multiplier, positions=positions, site=site))
        stack.enter_context(state_steering(model, layer, positions, direction=direction,
                                           strength=multiplier * state_scale, mode=mode))
        yield


def _attn_out_name(model, layer: int) -> str:
    n = model.cfg.n_layers
    if not isinstance(layer, int) or isinstance(layer, bool) or not -n <= layer < n:
        raise ValueError(f"layer must be an int in [0, {n - 1}] (or negative from the end), got {layer!r}")
    name = f"blocks.{layer % n}.hook_attn_out"
    if name not in model.hook_dict:
        raise ValueError(f"layer {layer % n} has no hook_attn_out (no mixer branch)")
    return name


@torch.no_grad()
def state_steering_change(model, tokens, layer: int, direction: torch.Tensor, strength: float,
                          positions: Sequence[int], mode: str = "readout"
                          ) -> Float[torch.Tensor, "batch n_positions"]:
    """‖Δ attn_out‖ at each of ``positions``: the norm of the change that state steering of ``layer`` by
    ``strength · direction`` causes in what the layer's mixer adds to the residual stream."""
    tokens = model.check_tokens(tokens)
    name = _attn_out_name(model, layer)
    where = check_positions(positions, tokens.shape[1])
    _, clean = model.run_with_cache(tokens, names_filter=lambda n: n == name)
    with state_steering(model, layer, list(where), direction=direction, strength=strength, mode=mode):
        _, steered = model.run_with_cache(tokens, names_filter=lambda n: n == name)
    return (steered[name][:, where] - clean[name][:, where]).norm(dim=-1)


def matched_state_strength(model, tokens, layer: int, direction: torch.Tensor, target_norm: float,
                           positions: Sequence[int], mode: str = "readout", rtol: float = 1e-4,
                           max_iter: int = 100) -> float:
    """The strength s > 0 at which state steering of ``layer`` by ``s · direction`` at ``positions`` changes
    the layer's mixer output (``hook_attn_out``) by ``target_norm`` in mean norm over the sequences of
    ``tokens`` and the steered positions (:func:`state_steering_change`); typically ``target_norm`` is the norm
    of the residual CAA vector, so that the two steerings move the residual stream equally at multiplier 1.

    For a mixer whose read-out is linear in the state the change is linear in s and the first guess
    ``target_norm / change(1)`` is exact; otherwise s is found by doubling and bisection, assuming the mean
    change grows with s. A sweep at multiplier m then uses strength m · s (matched exactly at m = ±1 only when
    the read-out is not linear). ValueError when the direction changes nothing, or when the change saturates below
    the target (a normalised read-out, e.g. DeltaNet's per-head RMSNorm, bounds it)."""
    if not target_norm > 0:
        raise ValueError(f"target_norm must be > 0, got {target_norm!r}")
    model.fast_weight_mixer(layer)  # NotDefinedForMixer for a layer without fast weights
    if not bool((direction != 0).any()):
        raise ValueError("the direction is zero: state steering with it does not change the layer's output")

    def change(s: float) -> float:
        return float(state_steering_change(model, tokens, layer, direction, s, positions, mode).mean())

    unit = change(1.0)
    if not unit > 0:
        raise ValueError("state steering with this direction does not change the layer's output; no strength "
                         "matches a residual vector")
    s = target_norm / unit
    value = change(s)
    if abs(value - target_norm) <= rtol * target_norm:
        return s
    lo, hi, previous = 0.0, s, value
    while value < target_norm:  # double until the target is passed, or the change stops growing (it saturates)
        lo, hi = hi, 2 * hi
        value = change(hi)
        if value < target_norm and value <= previous * (1 + 1e-3):
            raise ValueError(f"state steering saturates: its mean output change reaches only {value:.4g} "
                             f"(< target {target_norm:.4g}) at strength {hi:.4g}; no strength matches")
        previous = value
    for _ in range(max_iter):
        mid = (lo + hi) / 2
        value = change(mid)
        if abs(value - target_norm) <= rtol * target_norm:
            return mid
        lo, hi = (mid, hi) if value < target_norm else (lo, mid)
    return (lo + hi) / 2
