"""Associative-recall probes of fast weights: is the pair (k_i → v_i) in W_t, and does it decode?

For a layer, a list of (key position a_i, value position b_i) pairs per sequence, and positions t:
  - write fidelity      cos(W_tᵀ k_i, v_i)                 k_i = hook_k at a_i, v_i = hook_v at b_i
  - retrieval error     ‖W_tᵀ k_i − v_i‖ / ‖v_i‖
  - decodes             the retrieved vector, read out through the head's output path (output norm,
                        gate at t, W_O[head]) and the final norm and unembedding (logit lens), has
                        the value token tokens[b_i] as its top-1 prediction
  - lag = t − b_i, n_stored = number of pairs with b_j ≤ t, key_overlap = max_j≠i |cos(k_i, k_j)|
    over the pairs stored by t. Only t ≥ b_i are reported (the value has been seen).
The retrieved vector is the mixer's own read of W_t with k_i as the query (sum-normalised linear
attention: divided by the normaliser column).
"""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float

from .fast_weights import fast_weights
from ..mixers import NotDefinedForMixer
from .layer_inputs import fast_weight_mixer


def retrieve(W: Float[torch.Tensor, "*batch d_k d_state"], keys: Float[torch.Tensor, "*batch d_k"],
             normalize: bool = False, eps: float = 1e-6) -> Float[torch.Tensor, "*batch d_out"]:
    """Wᵀk for ``W: [..., d_k, d_v]``, ``keys: [..., d_k]`` → ``[..., d_v]`` (÷ normaliser column)."""
    r = torch.einsum("...kv,...k->...v", W.float(), keys.float())
    return r[..., :-1] / (r[..., -1:] + eps) if normalize else r


def check_pairs(pairs, batch: int, n_pos: int) -> list[list[tuple[int, int]]]:
    """``pairs``: one list of (key_pos, value_pos) per sequence (or one list shared by all)."""
    if isinstance(pairs, torch.Tensor):
        pairs = pairs.tolist()
    if pairs and isinstance(pairs[0], (tuple, list)) and len(pairs[0]) == 2 and isinstance(pairs[0][0], int):
        pairs = [pairs] * batch
    if len(pairs) != batch:
        raise ValueError(f"pairs must hold one list of (key_pos, value_pos) per sequence ({batch}), got {len(pairs)}")
    out = []
    for row in pairs:
        clean = []
        for pair in row:
            if len(pair) != 2:
                raise ValueError(f"each pair must be (key_pos, value_pos), got {pair!r}")
            a, b = int(pair[0]), int(pair[1])
            if not (0 <= a < n_pos and 0 <= b < n_pos):
                raise ValueError(f"pair {pair!r} lies outside the {n_pos} positions")
            clean.append((a, b))
        if not clean:
            raise ValueError("a sequence has no pairs to probe")
        out.append(clean)
    return out


@torch.no_grad()
def probe_associations(
    model, tokens, layer: int, pairs, positions: Optional[Sequence[int]] = None, decode: bool = True,
) -> pd.DataFrame:
    """One row per (sequence, pair, head, position t ≥ value position) with the metrics above.

    ``positions`` defaults to every position from the first value position on.
    """
    attn = fast_weight_mixer(model, layer)
    layer = layer % model.cfg.n_layers
    if (why := attn.key_value_state()) is not None:
        raise NotDefinedForMixer(f"the associative-recall probe reads W_tᵀk from a [d_k, d_v] state; it does not "
                                 f"apply to layer {layer} ({attn.label(attn.cfg)}): {why}")
    tokens = model.check_tokens(tokens)
    b, n_pos = tokens.shape
    pairs = check_pairs(pairs, b, n_pos)
    first = min(v for row in pairs for _, v in row)
    positions = list(range(first, n_pos)) if positions is None else [int(p) for p in positions]
    W = fast_weights(model, tokens, layer, positions)  # [batch, n_t, head, d_k, d_v]
    a = f"blocks.{layer}.attn."
    names = {a + "hook_k", a + "hook_v", f"blocks.{layer}.ln1.hook_normalized", f"blocks.{layer}.hook_resid_pre"}
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names, stop_at_layer=layer + 1)
    x_in = cache[f"blocks.{layer}.ln1.hook_normalized"] if f"blocks.{layer}.ln1.hook_normalized" in cache \
        else cache[f"blocks.{layer}.hook_resid_pre"]
    rows = []
    for bi, row in enumerate(pairs):
        ka = torch.tensor([p[0] for p in row])
        vb = torch.tensor([p[1] for p in row])
        keys = cache[a + "hook_k"][bi, ka]  # [n_pairs, head, d_k]
        vals = cache[a + "hook_v"][bi, vb]  # [n_pairs, head, d_v]
        r = attn.recurrence.read({"q": keys[None]}, W[bi][:, None])  # Wᵀk  [n_t, n_pairs, head, d_v]
        fid = F.cosine_similarity(r, vals[None].float(), dim=-1)
        err = (r - vals[None]).norm(dim=-1) / vals[None].norm(dim=-1).clamp_min(1e-12)
        ok = _decodes(model, attn, r, x_in[bi], positions, tokens[bi, vb]) if decode else None
        kcos = F.cosine_similarity(keys[:, None], keys[None], dim=-1).abs()  # [n_pairs, n_pairs, head]
        kcos = kcos.masked_fill(torch.eye(len(row), dtype=torch.bool)[..., None], 0.0)
        for ti, t in enumerate(positions):
            stored = vb <= t
            n_stored = int(stored.sum())
            for pi in range(len(row)):
                if vb[pi] > t:
                    continue
                overlap = (kcos[pi] * stored[:, None]).amax(0)  # [head]
                for h in range(model.cfg.n_heads):
                    rows.append(dict(
                        seq=bi, pair=pi, head=h, pos=t, lag=t - int(vb[pi]), n_stored=n_stored,
                        key_pos=int(ka[pi]), value_pos=int(vb[pi]), fidelity=float(fid[ti, pi, h]),
                        retrieval_error=float(err[ti, pi, h]), key_overlap=float(overlap[h]),
                        decodes=None if ok is None else bool(ok[ti, pi, h]),
                    ))
    return pd.DataFrame(rows)


def _decodes(model, attn, r: torch.Tensor, x: torch.Tensor, positions: list[int], targets: torch.Tensor) -> torch.Tensor:
    """Top-1 of the logit lens of retrieved vectors ``r: [n_t, n_pairs, head, d_v]`` equals targets[pair]."""
    n_t, n_pairs, n_heads, _ = r.shape
    xt = x[positions][:, None].expand(n_t, n_pairs, -1)  # mixer input at t, for the output gate
    out = attn.readout_outputs(r, xt)  # [n_t, n_pairs, head, d_model]: each head's read-out through its output path
    logits = model.unembed(model.ln_final(out))  # [n_t, n_pairs, head, vocab]
    return logits.argmax(-1) == targets[None, :, None]


def aggregate(df: pd.DataFrame, by: str, metrics: Sequence[str] = ("fidelity", "retrieval_error", "decodes")) -> pd.DataFrame:
    """Mean of the probe metrics per head and ``by`` ("lag", "n_stored" — the capacity curve — or
    "key_overlap", binned in tenths)."""
    if by not in ("lag", "n_stored", "key_overlap"):
        raise ValueError(f"by must be 'lag', 'n_stored' or 'key_overlap', got {by!r}")
    d = df.copy()
    if by == "key_overlap":
        d["key_overlap"] = (d["key_overlap"] * 10).floordiv(1).clip(upper=9) / 10
    cols = [m for m in metrics if m in d and d[m].notna().all()]
    return d.groupby(["head", by], as_index=False)[cols].mean(numeric_only=False).astype({c: float for c in cols})
