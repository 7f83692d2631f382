"""Whether anyone can see what a hook point would fire: the test behind a fast path that skips a tensor.

A mixer may compute a quantity only so that a hook can show it (softmax attention's scores and pattern, which a
fused ``scaled_dot_product_attention`` never materialises). It may skip that quantity only when nothing could read
or replace it: no forward or backward hook (or pre-hook) on the hook point (``run_with_cache``,
``run_with_hooks``, ``add_hook`` all register one), no global module hook, and no instance-level ``forward`` (nnsight installs its
controller there on every module of a model it wraps, permanently, so a wrapped model always takes the full path).
"""

from __future__ import annotations

from torch import nn
from torch.nn.modules import module as _module


def observed(*points: nn.Module) -> bool:
    """True if any of ``points`` has a hook, a global module hook is registered, or its ``forward`` is replaced."""
    if any(getattr(_module, name, None) for name in _GLOBAL_HOOKS):
        return True
    return any(p._forward_hooks or p._forward_pre_hooks or p._backward_hooks or p._backward_pre_hooks
               or "forward" in p.__dict__ for p in points)


_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")
