"""A layer's fast weights at every position, with the writes that built them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..analysis.layer_inputs import fast_weight_mixer
from ..mixers import NotDefinedForMixer


@dataclass(frozen=True)
class FastWeightTrajectory:
    """One sequence, one layer. W: [pos, head, d_k, d_v] (W_t after the write at t); k: [pos, head, d_k]
    the written keys; beta, log_decay: [pos, head] and delta (hook_delta, the written value u_t):
    [pos, head, d_head] — None for mixers without them (linear attention has no β, no δ)."""

    W: torch.Tensor
    k: torch.Tensor
    beta: Optional[torch.Tensor]
    delta: Optional[torch.Tensor]
    log_decay: Optional[torch.Tensor]

    def before(self, t: int) -> torch.Tensor:
        """W_{t-1} ``[head, d_k, d_v]`` (zeros before the first write)."""
        return self.W[t - 1] if t > 0 else torch.zeros_like(self.W[0])

    def singular_values(self, head: int) -> torch.Tensor:
        """``[pos, min(d_k, d_v)]`` singular values of W_t for one head, largest first."""
        return torch.linalg.svdvals(self.W[:, head].double()).float()


@torch.no_grad()
def fast_weight_trajectory(model, tokens, layer: int) -> FastWeightTrajectory:
    if (why := fast_weight_mixer(model, layer).key_value_state()) is not None:
        raise NotDefinedForMixer(f"the fast-weight trajectory shows a [d_k, d_v] matrix per head; layer {layer}: {why}")
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
                                log_decay=get("hook_log_decay"))
