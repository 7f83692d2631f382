"""Per-token inputs and output gradients of linear layers, read from the model's hooks in one pass.

The loss is a *sum* over the predictions of the batch (so a token's gradient does not depend on the
batch size), with labels either

  - ``"sampled"`` (true Fisher): ŷ_t ~ softmax(logits_t) at every position t, drawn with ``generator``;
  - ``"gold"`` (empirical Fisher): the next token, tokens[:, t+1] for t < pos−1 (the last position
    predicts nothing, so its output gradients are zero).

The forward hooks only *record* tensors (they return nothing, so the run is unchanged); the output
gradients come from ``torch.autograd.grad`` of that loss with respect to the recorded outputs, which
leaves every parameter's ``.grad`` alone. Hooks live only inside ``model.hooks(...)``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from ...model import lm_loss
from .sites import LinearSite, resolve_sites

LABELS = ("sampled", "gold")


def sample_labels(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw from the model's predictive distribution at every position: ``[batch, pos]`` long."""
    probs = logits.detach().to(torch.promote_types(logits.dtype, torch.float32)).softmax(-1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, 1, generator=generator).view(logits.shape[:-1])


def fisher_loss(logits: torch.Tensor, tokens: torch.Tensor, labels: str,
                generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Σ over predictions of −log p(label): sampled labels at every position, or gold next tokens."""
    if labels == "sampled":
        if generator is None:
            raise ValueError("labels='sampled' needs a torch.Generator (seeded) to draw the labels with")
        target = sample_labels(logits, generator)
        logp = F.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), dim=-1)
        return -logp.gather(-1, target[..., None]).sum()
    if labels == "gold":
        if tokens.shape[1] < 2:
            raise ValueError("labels='gold' needs sequences of at least two tokens")
        return lm_loss(logits, tokens, reduction="sum")
    raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")


def _make_leaf(tensor, hook):
    # a model with frozen parameters builds no graph; start one at the embedding instead
    if not tensor.requires_grad:
        return tensor.detach().requires_grad_()
    return None


def capture_linear(model, tokens, sites=None, labels: str = "sampled",
                   generator: Optional[torch.Generator] = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For each site (parameter name → ``(a, g)``): inputs ``a [tokens, d_in]`` and output gradients
    ``g [tokens, d_out]`` of every token of ``tokens [batch, pos]`` (row ``b·pos + t``), detached.

    ``sites``: parameter names or :class:`LinearSite` s (None: all); see :mod:`.sites`.
    """
    if labels not in LABELS:
        raise ValueError(f"labels must be one of {LABELS}, got {labels!r}")
    tokens = model.check_tokens(tokens)
    chosen: list[LinearSite] = resolve_sites(model, sites)
    names = {s.input_hook for s in chosen} | {s.output_hook for s in chosen}
    acts: dict[str, torch.Tensor] = {}

    def record(tensor, hook):
        acts[hook.name] = tensor

    fwd = [("hook_embed", _make_leaf)] + [(name, record) for name in sorted(names)]
    with torch.enable_grad(), model.hooks(fwd_hooks=fwd):
        logits = model(tokens)
        loss = fisher_loss(logits, tokens, labels, generator)
        outputs = sorted({s.output_hook for s in chosen})
        grads = torch.autograd.grad(loss, [acts[n] for n in outputs], allow_unused=True)
    grad = {n: torch.zeros_like(acts[n]) if g is None else g for n, g in zip(outputs, grads)}
    return {s.param: (acts[s.input_hook].detach().reshape(-1, s.d_in), grad[s.output_hook].reshape(-1, s.d_out))
            for s in chosen}
