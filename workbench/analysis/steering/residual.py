"""Contrastive activation addition (CAA) on the residual stream (Rimsky et al. 2024; Paulo et al. 2024 on RNNs).

    v = mean_i h_L(positive_i)[position] − mean_i h_L(negative_i)[position]    (h_L: ``blocks.{L}.hook_{site}``)
    steer: h_L[t] ← h_L[t] + multiplier · v   at the chosen positions t (all by default)

The steering is a context manager over the model's hooks: inside it every run is steered, outside nothing is;
the model is never changed.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from jaxtyping import Float

from ...mixers import check_positions

SITES = ("resid_pre", "resid_mid", "resid_post")


def residual_hook_name(model, layer: int, site: str) -> str:
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")
    n = model.cfg.n_layers
    if not isinstance(layer, int) or isinstance(layer, bool) or not -n <= layer < n:
        raise ValueError(f"layer must be an int in [0, {n - 1}] (or negative from the end), got {layer!r}")
    name = f"blocks.{layer % n}.hook_{site}"
    if name not in model.hook_dict:
        raise ValueError(f"layer {layer % n} has no hook_{site} (a block with one branch has only resid_pre and "
                         "resid_post)")
    return name


@torch.no_grad()
def residual_activations(model, tokens, layer: int, position: int = -1, site: str = "resid_pre"
                         ) -> Float[torch.Tensor, "batch d_model"]:
    """h_L at ``position`` of each sequence (``blocks.{layer}.hook_{site}``)."""
    tokens = model.check_tokens(tokens)
    name = residual_hook_name(model, layer, site)
    p = check_positions(position, tokens.shape[1])[0]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == name)
    return cache[name][:, p]


def caa_vector(model, positive, negative, layer: int, position: int = -1, site: str = "resid_pre"
               ) -> Float[torch.Tensor, "d_model"]:
    """The CAA steering vector: mean residual activation at ``position`` over the ``positive`` prompts
    ``[batch, pos]`` minus that over the ``negative`` ones (each set may have its own batch and length)."""
    return (residual_activations(model, positive, layer, position, site).mean(0)
            - residual_activations(model, negative, layer, position, site).mean(0))


def unembedding_direction(model, token: int) -> Float[torch.Tensor, "d_model"]:
    """The unit residual direction that raises ``token``'s logit most: W_U[:, token] / ‖W_U[:, token]‖."""
    if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < model.cfg.d_vocab:
        raise ValueError(f"token must be an id in [0, {model.cfg.d_vocab - 1}], got {token!r}")
    u = model.W_U[:, token].detach()
    return u / u.norm().clamp_min(1e-12)


@contextmanager
def residual_steering(model, layer: int, vector: torch.Tensor, multiplier: float = 1.0,
                      positions: Optional[list[int]] = None, site: str = "resid_pre") -> Iterator[None]:
    """Inside this context, ``multiplier · vector`` ``[d_model]`` is added to ``blocks.{layer}.hook_{site}`` at
    ``positions`` (None: every position) in every run of ``model``. Multiplier 0 leaves runs exactly as they were."""
    name = residual_hook_name(model, layer, site)
    if not isinstance(vector, torch.Tensor) or tuple(vector.shape) != (model.cfg.d_model,):
        got = tuple(vector.shape) if isinstance(vector, torch.Tensor) else type(vector).__name__
        raise ValueError(f"the steering vector must have shape ({model.cfg.d_model},) (d_model), got {got}")
    if positions is not None:
        check_positions(positions, None)

    def hook(h: torch.Tensor, hook) -> torch.Tensor:  # [batch, pos, d_model]
        if multiplier == 0:
            return h
        where = slice(None) if positions is None else check_positions(positions, h.shape[1])
        out = h.clone()
        out[:, where] = out[:, where] + multiplier * vector.to(h)
        return out

    with model.hooks(fwd_hooks=[(name, hook)]):
        yield
