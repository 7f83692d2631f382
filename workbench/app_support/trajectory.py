"""A layer's fast weights at every position, with the writes that built them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..analysis.layer_inputs import fast_weight_mixer


@dataclass(frozen=True)
class FastWeightTrajectory:
    """One sequence, one layer. W: [pos, head, *state] (the state after the write at t; ``axes`` names the
    state's axes, e.g. ``("d_k", "d_v")``, or the Fast Weight Memory's ``("d_s", "d_r", "d_t")``);
    k: [pos, head, d_k] the written keys; beta, log_decay: [pos, head] and delta (hook_delta, the
    written value u_t): [pos, head, d_head] — None for mixers without them (linear attention has no β)."""

    W: torch.Tensor
    k: Optional[torch.Tensor]
    beta: Optional[torch.Tensor]
    delta: Optional[torch.Tensor]
    log_decay: Optional[torch.Tensor]
    axes: tuple[str, ...] = ("d_k", "d_v")
    start: Optional[torch.Tensor] = None  # [head, *state] W_{-1}, the state before the first write (None: zeros)

    def matrix(self, X: torch.Tensor, fixed: Optional[int] = None, index: int = 0) -> torch.Tensor:
        """One head's state ``X [*state]`` as a matrix to draw: itself if it has two axes; else the slice
        with axis ``fixed`` at ``index`` (a third-order state) — ``fixed`` None takes the unfolding
        ``[Π leading axes, last axis]``."""
        if X.dim() == 2:
            return X
        if fixed is None:
            return X.reshape(-1, X.shape[-1])
        if not 0 <= fixed < X.dim() or not 0 <= index < X.shape[fixed]:
            raise ValueError(f"no index {index} on axis {fixed} of a state of shape {tuple(X.shape)}")
        return self.matrix(X.select(fixed, index), None)

    def before(self, t: int) -> torch.Tensor:
        """W_{t-1} ``[head, *state]``; before the first write the memory's start state (zeros unless it
        starts from learned weights, as the self-referential weight matrix does)."""
        if t > 0:
            return self.W[t - 1]
        return torch.zeros_like(self.W[0]) if self.start is None else self.start

    @property
    def beta_per_head(self) -> Optional[torch.Tensor]:
        """β as ``[pos, head]``: itself, or its mean over any further axis (the Delta LSTM's gates)."""
        return None if self.beta is None else self.beta.reshape(*self.beta.shape[:2], -1).mean(-1)

    @property
    def delta_norm(self) -> Optional[torch.Tensor]:
        """‖hook_delta‖ per position and head ``[pos, head]`` (over every further axis)."""
        return None if self.delta is None else self.delta.reshape(*self.delta.shape[:2], -1).norm(dim=-1)

    def singular_values(self, head: int) -> torch.Tensor:
        """``[pos, min(rows, cols)]`` singular values of W_t (of its unfolding ``[Π leading axes, last axis]``
        for a state of more than two axes) for one head, largest first."""
        W = self.W[:, head]
        return torch.linalg.svdvals(W.reshape(W.shape[0], -1, W.shape[-1]).double()).float()


@torch.no_grad()
def fast_weight_trajectory(model, tokens, layer: int) -> FastWeightTrajectory:
    attn = fast_weight_mixer(model, layer)
    layer = layer % model.cfg.n_layers
    tokens = model.check_tokens(tokens)
    if tokens.shape[0] != 1:
        raise ValueError(f"the trajectory is for one sequence, got a batch of {tokens.shape[0]}")
    W = model.fast_weights(tokens, layer, list(range(tokens.shape[1])))[0]
    a = f"blocks.{layer}.attn."
    names = {a + n for n in ("hook_k", "hook_beta", "hook_delta", "hook_log_decay")}
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names, stop_at_layer=layer + 1)
    get = lambda n: cache[a + n][0].float() if a + n in cache else None  # noqa: E731
    return FastWeightTrajectory(W=W, k=get("hook_k"), beta=get("hook_beta"), delta=get("hook_delta"),
                                log_decay=get("hook_log_decay"), axes=tuple(attn.state_axes),
                                start=model.initial_fast_weights(tokens, layer)[0])
