"""Per-layer quality of a lens on held-out tokens: next-token cross-entropy / perplexity and KL to the final layer.

    ce_ℓ  = mean over predictions of −log softmax(lens_ℓ)[t, token_{t+1}]          (nats; ppl_ℓ = exp ce_ℓ)
    kl_ℓ  = mean over positions of KL(final ‖ lens_ℓ) = Σ_v p_final (log p_final − log p_ℓ)   (nats)

the final distribution being the model's own (layer n_layers), as in Belrose et al. (2023) and the authors'
evaluation (tuned_lens/scripts/eval_loop.py: ``ce`` against the next token, ``kl`` from the final logits).
"""

from __future__ import annotations

import math
from typing import Iterable, Optional, Union

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float
from tqdm.auto import tqdm

from ...model import lm_loss
from .logit_lens import decode
from .residuals import residual_hooks, residual_stream
from .tuned_lens import TunedLens


def kl_to_final(final_logits: Float[torch.Tensor, "... vocab"], lens_logits: Float[torch.Tensor, "... vocab"]
                ) -> Float[torch.Tensor, "..."]:
    """KL(final ‖ lens) per position, in nats, computed in float32 or wider (0 where the two are equal)."""
    if not isinstance(final_logits, torch.Tensor) or not isinstance(lens_logits, torch.Tensor):
        raise ValueError("kl_to_final takes two logit tensors")
    if final_logits.shape != lens_logits.shape:
        raise ValueError(f"the logits differ in shape: final {tuple(final_logits.shape)}, lens {tuple(lens_logits.shape)}")
    dtype = torch.promote_types(final_logits.dtype, torch.float32)
    target = F.log_softmax(final_logits.to(dtype), dim=-1)
    return F.kl_div(F.log_softmax(lens_logits.to(dtype), dim=-1), target, log_target=True, reduction="none").sum(-1)


def token_batches(batches) -> list[torch.Tensor]:
    """``batches`` as a non-empty list of ``[batch, pos]`` token tensors (one tensor is one batch)."""
    if isinstance(batches, torch.Tensor):
        batches = [batches]
    try:
        out = list(batches)
    except TypeError:
        raise ValueError(f"batches must be a token tensor [batch, pos] or an iterable of them, got "
                         f"{type(batches).__name__}") from None
    if not out:
        raise ValueError("no batches: pass at least one token tensor [batch, pos]")
    for i, b in enumerate(out):
        if not isinstance(b, torch.Tensor) or b.dim() != 2 or b.shape[1] < 2:
            shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
            raise ValueError(f"batch {i} must be a token tensor [batch, pos ≥ 2], got {shape}")
    return out


@torch.no_grad()
def lens_table(model, batches: Union[torch.Tensor, Iterable[torch.Tensor]], lens: Optional[TunedLens] = None,
               progress: bool = False) -> pd.DataFrame:
    """One row per layer 0 … n_layers (``hook``: the residual stream decoded, :mod:`.residuals`) with the logit
    lens's ``logit_ce``, ``logit_ppl``, ``logit_kl`` and, given a tuned ``lens``, ``tuned_ce``, ``tuned_ppl``,
    ``tuned_kl`` (module docstring), pooled over every prediction of ``batches`` (token tensors ``[batch, pos]``).
    The last row is the model itself (KL 0 for both lenses)."""
    batches = token_batches(batches)
    if lens is not None:
        if not isinstance(lens, TunedLens):
            raise ValueError(f"lens must be a TunedLens or None, got {type(lens).__name__}")
        lens.check_model(model)
    lenses = {"logit": None} if lens is None else {"logit": None, "tuned": lens}
    n_layers = model.cfg.n_layers + 1
    totals = {(name, stat): [0.0] * n_layers for name in lenses for stat in ("ce", "kl")}
    n_pred = n_pos = 0
    for tokens in tqdm(batches, desc="lens table", disable=not progress):
        tokens = model.check_tokens(tokens)
        resid = residual_stream(model, tokens)  # [layer, batch, pos, d_model]
        final = decode(model, resid[-1])
        for layer in range(n_layers):
            for name, tuned in lenses.items():
                logits = decode(model, resid[layer]) if tuned is None else tuned.decode(model, resid[layer], layer)
                totals[name, "ce"][layer] += float(lm_loss(logits, tokens, reduction="sum"))
                totals[name, "kl"][layer] += float(kl_to_final(final, logits).double().sum())
        n_pred += tokens[:, 1:].numel()
        n_pos += tokens.numel()
    rows = []
    for layer, hook in enumerate(residual_hooks(model)):
        row = {"layer": layer, "hook": hook}
        for name in lenses:
            ce = totals[name, "ce"][layer] / n_pred
            row.update({f"{name}_ce": ce, f"{name}_ppl": math.exp(ce), f"{name}_kl": totals[name, "kl"][layer] / n_pos})
        rows.append(row)
    return pd.DataFrame(rows)
