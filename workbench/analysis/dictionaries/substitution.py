"""WriteSAE's headline test: does installing an atom's write in place of the native write at one position
beat removing the write?

For each *firing* (a write whose code gives atom i a non-zero value) at position t, four runs differ only in
the state of one head after t (as the paper's released substitution script defines them,
``scripts/clean_amplified_kl.py`` of JackYoung27/WriteSAE):

    native : W_t
    atom   : W_t − k_t u_tᵀ + ‖k_t u_tᵀ‖_F · a_i / ‖a_i‖_F          (the firing atom at the native write's norm)
    ablate : W_t − k_t u_tᵀ                                          (the write removed)
    random : W_t − k_t u_tᵀ + ‖k_t u_tᵀ‖_F · a_j / ‖a_j‖_F          (a non-firing atom j at the same norm)

each in ``carry`` mode (every later position recomputed). The metrics, over the predictions from position t
on that the task counts (its ``loss_mask``; all of them without one): the mean loss of the true next token
(``loss_*``) and the paper's forward KL(p_native ‖ p_cond) (``kl_*``). "Atom beats ablation" means a
strictly lower value; :func:`win_rate` gives the fraction with a Wilson 95 % interval, as the paper reports.
"""

from __future__ import annotations

import math
from typing import Optional

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..editing import patch_fast_weights
from .install import replace_write
from .write_sae import WriteSAE
from .writes import check_head, state_writes

CONDITIONS = ("atom", "ablate", "random")


def counted_predictions(tokens: torch.Tensor, loss_mask: Optional[torch.Tensor]) -> torch.Tensor:
    """``[batch, pos-1]`` bool: the predictions logits[:, s] → tokens[:, s+1] the metric counts."""
    b, t = tokens.shape
    if loss_mask is None:
        return torch.ones(b, t - 1, dtype=torch.bool, device=tokens.device)
    if tuple(loss_mask.shape) != (b, t - 1):
        raise ValueError(f"loss_mask must be [batch, pos-1] = {(b, t - 1)}, got {tuple(loss_mask.shape)}")
    return loss_mask.bool().to(tokens.device)


def eligible_positions(counted: torch.Tensor) -> torch.Tensor:
    """``[batch, pos]`` bool: positions t with at least one counted prediction at s ≥ t."""
    later = counted.flip(-1).cumsum(-1).flip(-1) > 0  # [batch, pos-1]: any counted at s >= t
    return torch.cat([later, torch.zeros_like(later[:, :1])], dim=1)


@torch.no_grad()
def find_firings(sae: WriteSAE, keys: torch.Tensor, values: torch.Tensor, allowed: torch.Tensor,
                 n_firings: Optional[int] = None, seed: int = 0) -> pd.DataFrame:
    """Firings (sequence, position, atom, code) of ``sae`` on one head's writes ``keys [batch, pos, d_k]``,
    ``values [batch, pos, d_v]`` at ``allowed [batch, pos]`` positions; at most ``n_firings`` drawn uniformly
    (seeded) when given."""
    codes = sae.encode(keys.to(sae.b_dec), values.to(sae.b_dec))
    codes = codes * allowed[..., None].to(codes)
    seq, pos, atom = torch.nonzero(codes > 0, as_tuple=True)
    if n_firings is not None and len(seq) > n_firings:
        pick = torch.randperm(len(seq), generator=torch.Generator().manual_seed(seed))[:n_firings].sort().values
        seq, pos, atom = seq[pick], pos[pick], atom[pick]
    return pd.DataFrame({"sequence": seq.tolist(), "position": pos.tolist(), "atom": atom.tolist(),
                         "code": codes[seq, pos, atom].tolist()})


def _metrics(logits: torch.Tensor, native_logp: torch.Tensor, targets: torch.Tensor, counted: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: mean true-next-token loss and mean KL(native ‖ this) over the counted predictions."""
    logp = F.log_softmax(logits[:, :-1].double(), dim=-1)
    nll = -logp.gather(-1, targets[..., None])[..., 0]
    kl = (native_logp.exp() * (native_logp - logp)).sum(-1)
    w = counted.double()
    return (nll * w).sum(-1) / w.sum(-1), (kl * w).sum(-1) / w.sum(-1)


@torch.no_grad()
def substitution_test(model, sae: WriteSAE, tokens: torch.Tensor, layer: int, head: int,
                      loss_mask: Optional[torch.Tensor] = None, n_firings: Optional[int] = 500, seed: int = 0,
                      firings: Optional[pd.DataFrame] = None, rows_per_run: int = 192, progress: bool = True
                      ) -> pd.DataFrame:
    """One row per firing: sequence, position, atom, code, random_atom, write_norm, and ``loss_*``/``kl_*`` for
    native (loss only), atom, ablate and random (see the module docstring). ``firings`` overrides the firings
    found by the encoder (columns sequence, position, atom)."""
    check_head(model, head)
    tokens = model.check_tokens(tokens)
    counted = counted_predictions(tokens, loss_mask)
    keys, values = (x[:, :, head] for x in state_writes(model, tokens, layer))
    if firings is None:
        firings = find_firings(sae, keys, values, eligible_positions(counted), n_firings, seed)
    else:
        missing = {"sequence", "position", "atom"} - set(firings.columns)
        if missing:
            raise ValueError(f"firings lacks the columns {sorted(missing)}")
        firings = firings.copy()
    if firings.empty:
        raise ValueError("no firings: the dictionary's codes are zero at every eligible position (positions with a "
                         "counted prediction at or after them)")
    gen = torch.Generator().manual_seed(seed + 1)
    atoms = sae.atoms().detach().double()
    unit_atoms = atoms / atoms.flatten(1).norm(dim=-1)[:, None, None]
    codes = sae.encode(keys.to(sae.b_dec), values.to(sae.b_dec)).cpu()
    rand = []
    for s, p in zip(firings.sequence, firings.position):  # a random atom that does not fire on this write
        silent = torch.nonzero(codes[s, p] == 0).flatten()
        rand.append(int(silent[torch.randint(len(silent), (1,), generator=gen)]) if len(silent) else -1)
    firings["random_atom"] = rand
    native_logits = model(tokens)
    native_logp = F.log_softmax(native_logits[:, :-1].double(), dim=-1)
    targets = tokens[:, 1:]
    s_all = torch.tensor(firings.sequence.tolist(), dtype=torch.long)
    t_all = torch.tensor(firings.position.tolist(), dtype=torch.long)
    native = torch.einsum("nk,nv->nkv", keys[s_all, t_all].double(), values[s_all, t_all].double())
    norm = native.flatten(1).norm(dim=-1)
    firings["write_norm"] = norm.tolist()
    after = torch.arange(counted.shape[1], device=counted.device)
    mask = torch.stack([counted[s, :] & (after >= t) for s, t in zip(s_all, t_all)])
    nll_native, _ = _metrics(native_logits[s_all], native_logp[s_all], targets[s_all], mask)
    firings["loss_native"] = nll_native.tolist()
    out = {f"{m}_{c}": torch.full((len(firings),), math.nan, dtype=torch.float64) for m in ("loss", "kl") for c in CONDITIONS}
    chunk = max(1, rows_per_run // len(CONDITIONS))
    groups = [torch.nonzero(t_all == t).flatten() for t in t_all.unique()]
    work = [g[i:i + chunk] for g in groups for i in range(0, len(g), chunk)]
    for idx in tqdm(work, desc="substitution", disable=not progress, leave=False):
        t = int(t_all[idx[0]])
        r = torch.tensor(firings.random_atom.tolist(), dtype=torch.long)[idx]
        scale = norm[idx][:, None, None]
        atom_w = scale * unit_atoms.to(scale)[torch.tensor(firings.atom.tolist(), dtype=torch.long)[idx]]
        rand_w = torch.where((r >= 0)[:, None, None].to(scale.device), scale * unit_atoms[r.clamp_min(0)].to(scale),
                             torch.nan)
        writes = torch.cat([atom_w, torch.zeros_like(atom_w), rand_w])  # rows: atom..., ablate..., random...
        nat = native[idx].repeat(len(CONDITIONS), 1, 1)
        rows = s_all[idx].repeat(len(CONDITIONS))
        logits = patch_fast_weights(model, tokens[rows], layer, t, lambda st: replace_write(st, head, nat, writes),
                                    mode="carry")
        nll, kl = _metrics(logits, native_logp[rows], targets[rows], mask[idx].repeat(len(CONDITIONS), 1))
        for j, c in enumerate(CONDITIONS):
            out[f"loss_{c}"][idx] = nll[j * len(idx):(j + 1) * len(idx)].cpu()
            out[f"kl_{c}"][idx] = kl[j * len(idx):(j + 1) * len(idx)].cpu()
    for name, col in out.items():
        firings[name] = col.tolist()
    return firings


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion (95 % by default)."""
    if n == 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def win_rate(results: pd.DataFrame, baseline: str = "ablate", metric: str = "loss") -> dict:
    """How often the atom's install beats ``baseline`` ("ablate" or "random") on ``metric`` ("loss": the true
    next token's loss; "kl": KL to the native model): wins, n, fraction and its Wilson 95 % interval. Firings
    without a value for the baseline (no non-firing atom left for "random") are left out."""
    if baseline not in CONDITIONS[1:] or metric not in ("loss", "kl"):
        raise ValueError(f"baseline must be 'ablate' or 'random' and metric 'loss' or 'kl', got {baseline!r}, {metric!r}")
    a, b = results[f"{metric}_atom"], results[f"{metric}_{baseline}"]
    ok = a.notna() & b.notna()
    wins, n = int((a[ok] < b[ok]).sum()), int(ok.sum())
    lo, hi = wilson_interval(wins, n)
    return {"baseline": baseline, "metric": metric, "wins": wins, "n": n,
            "fraction": wins / n if n else math.nan, "ci_low": lo, "ci_high": hi}
