"""Why recurrence helps: what the models' hidden states hold, and what the recurrent term does to the keys.

Two probes, pure functions of a model, a task and a batch of tokens:

- :func:`decode_state` — a linear probe (ridge regression onto one-hot classes, fitted on half the
  sequences, scored on the other half) decoding the task's running state from each layer's output
  (``blocks.{i}.hook_resid_post``) at every position: for code execution the current value of each
  variable (as of the statements completed so far), for ListOps the nesting depth and the value of the
  innermost open list so far. A model that tracks the program must hold these; the majority class of the
  scoring half is the baseline.
- :func:`key_recurrence` — for a mixer whose key is written as ``k_t = softmax(k̃_t + r_t)`` with a slow part
  ``hook_k_pre`` (k̃ = x W_K) and a recurrent part r_t = f_t R_k (Recurrent Delta Net), read only through
  hooks: softmax is shift-invariant, so r_t = log k_t − k̃_t up to a constant per row, and with centred
  logits (c(·) subtracts the mean over d_k) the recurrent share of the key's logit is
  ‖c(log k_t) − c(k̃_t)‖ / (‖c(k̃_t)‖ + ‖c(log k_t) − c(k̃_t)‖). Also cos(c(log k_t), c(k̃_t)) — how far the
  recurrent term turns the written key's logits — and, per token kind, the mean cosine between the key
  logits written at two positions that hold the same token, with the recurrent term (c(log k_t)) and
  without it (c(k̃_t)): the recurrent term lets the same variable name be written under different keys
  depending on what the model has computed. (Cosines of the softmax outputs themselves are all near 1:
  they share the large uniform component, hence the logits.) For mixers without these hooks the
  same-token cosine is that of their ``hook_k`` itself (if it is ``[batch, pos, head, d_k]``) — a
  different space (e.g. L2-normalised keys), a reference for the layer-wise trend only.
"""

from __future__ import annotations

from typing import Optional

import pandas as pd
import torch
import torch.nn.functional as F

from workbench.tasks import CodeExecution, ListOps
from workbench.tasks.listops import running_states

IGNORE = -1


# --- targets ------------------------------------------------------------------------------------------

def code_targets(task: CodeExecution, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"value of x": [batch, pos] long, …}``: the class index (value − min_value) of each variable after
    each position, IGNORE where it is unassigned, on padding, and after the program (the queries)."""
    out = {f"value of {task.decode([task.var_id(i)])[0]}": torch.full(tokens.shape, IGNORE, dtype=torch.long)
           for i in range(task.num_vars)}
    query_start = _query_start(task, tokens)
    for b in range(tokens.shape[0]):
        ids = tokens[b].tolist()
        start = next(i for i, t in enumerate(ids) if t != 0)
        states = task.run(task.decode(ids[start:]))
        for offset, values in enumerate(states):
            pos = start + offset
            if pos >= query_start[b]:
                break
            for name, value in values.items():
                if value is not None:
                    out[f"value of {name}"][b, pos] = value - task.min_value
    return out


def _query_start(task: CodeExecution, tokens: torch.Tensor) -> list[int]:
    """Position of the first query's ``print`` in each sequence (the queries are the last 4·n tokens)."""
    n_queries = torch.zeros(tokens.shape[0], dtype=torch.long)
    numbers = tokens >= task.number_id(task.min_value)
    semicolon = tokens == task.token_id(";")
    # a query's answer is a number right after a ";" — programs have numbers only after "=" or a comparison
    n_queries = (numbers[:, 1:] & semicolon[:, :-1]).sum(1)
    return (tokens.shape[1] - 4 * n_queries).tolist()


def listops_targets(task: ListOps, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """``{"depth": …, "running value": …}`` per position ``[batch, pos]`` (IGNORE on padding, the answer,
    and for the running value where the innermost list has no argument yet)."""
    depth = torch.full(tokens.shape, IGNORE, dtype=torch.long)
    value = torch.full(tokens.shape, IGNORE, dtype=torch.long)
    for b in range(tokens.shape[0]):
        ids = tokens[b].tolist()
        start = next(i for i, t in enumerate(ids) if t != 0)
        words = task.decode(ids[start:-1])  # without the answer
        for offset, (d, v) in enumerate(running_states(words)):
            depth[b, start + offset] = d
            if v is not None:
                value[b, start + offset] = v
    return {"depth": depth, "running value": value}


def state_targets(task, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    if isinstance(task, CodeExecution):
        return code_targets(task, tokens)
    if isinstance(task, ListOps):
        return listops_targets(task, tokens)
    raise ValueError(f"no state targets for a {type(task).__name__} task")


# --- linear probe -------------------------------------------------------------------------------------

def ridge_probe(features: torch.Tensor, labels: torch.Tensor, fit: torch.Tensor, lam: float = 1.0) -> dict:
    """Fit a ridge regression from ``features [n, d]`` onto one-hot ``labels [n]`` on the rows ``fit``
    (bool), predict the argmax on the others. Returns accuracy, the majority-class baseline of the scored
    rows and their count. Features are standardised with the fitting rows' statistics."""
    if features.shape[0] != labels.shape[0] or fit.shape[0] != labels.shape[0]:
        raise ValueError("features, labels and fit must have the same number of rows")
    score = ~fit
    if fit.sum() < 2 or score.sum() < 1:
        return {"accuracy": float("nan"), "baseline": float("nan"), "n": int(score.sum())}
    x = features.double()
    mu, sd = x[fit].mean(0), x[fit].std(0) + 1e-6
    x = torch.cat([(x - mu) / sd, torch.ones(x.shape[0], 1, dtype=x.dtype)], dim=1)
    n_classes = int(labels.max()) + 1
    y = F.one_hot(labels, n_classes).double()
    xf = x[fit]
    w = torch.linalg.solve(xf.T @ xf + lam * torch.eye(x.shape[1], dtype=x.dtype), xf.T @ y[fit])
    pred = (x[score] @ w).argmax(1)
    truth = labels[score]
    baseline = torch.bincount(truth, minlength=n_classes).max().item() / len(truth)
    return {"accuracy": float((pred == truth).double().mean()), "baseline": float(baseline), "n": int(score.sum())}


@torch.no_grad()
def decode_state(model, task, tokens: torch.Tensor, lam: float = 1.0) -> pd.DataFrame:
    """One row per (layer, target): the ridge probe's accuracy decoding ``state_targets`` from
    ``blocks.{layer}.hook_resid_post``, fitted on the first half of the sequences and scored on the rest."""
    targets = state_targets(task, tokens)
    names = [f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    half = tokens.shape[0] // 2
    rows = []
    for layer, name in enumerate(names):
        resid = cache[name].float()  # [batch, pos, d_model]
        for target, labels in targets.items():
            keep = labels >= 0  # [batch, pos]
            seq = torch.arange(tokens.shape[0])[:, None].expand_as(labels)
            result = ridge_probe(resid[keep], labels[keep], seq[keep] < half, lam)
            rows.append({"layer": layer, "target": target, **result})
    return pd.DataFrame(rows)


# --- the recurrent term in the keys -------------------------------------------------------------------

def _centre(x: torch.Tensor) -> torch.Tensor:
    return x - x.mean(-1, keepdim=True)


def recurrent_key_parts(k_pre: torch.Tensor, k: torch.Tensor, eps: float = 1e-12) -> tuple[torch.Tensor, torch.Tensor]:
    """(slow, recurrent) centred logits of keys ``k = softmax(k_pre + r)`` (``[..., d_k]``): c(k_pre) and
    c(log k) − c(k_pre), which is c(r) exactly."""
    slow = _centre(k_pre.double())
    return slow, _centre(torch.log(k.double().clamp_min(eps))) - slow


def same_token_cosine(keys: torch.Tensor, tokens: torch.Tensor, kinds: torch.Tensor) -> pd.DataFrame:
    """Mean cosine between the keys ``[batch, pos, head, d_k]`` written at two different positions of one
    sequence holding the same token, per token kind (over heads, pairs and sequences; padding excluded)."""
    k = F.normalize(keys.double(), dim=-1)
    rows: dict[int, list[float]] = {}
    for b in range(tokens.shape[0]):
        for tok in tokens[b].unique().tolist():
            pos = (tokens[b] == tok).nonzero().flatten()
            kind = int(kinds[b, pos[0]])
            if len(pos) < 2 or kind == 0:
                continue
            kb = k[b, pos]  # [n, head, d_k]
            cos = torch.einsum("ihd,jhd->hij", kb, kb)
            iu = torch.triu_indices(len(pos), len(pos), offset=1)
            rows.setdefault(kind, []).extend(cos[:, iu[0], iu[1]].flatten().tolist())
    return pd.DataFrame([{"kind": kind, "same_token_cos": sum(v) / len(v), "n_pairs": len(v)}
                         for kind, v in sorted(rows.items())], columns=["kind", "same_token_cos", "n_pairs"])


def _has(model, name: str) -> bool:
    return name in set(model.hook_names)


@torch.no_grad()
def key_recurrence(model, task, tokens: torch.Tensor, kind_names: Optional[dict[int, str]] = None) -> pd.DataFrame:
    """One row per (layer, token kind): the recurrent share of the key logits, cos(c(log k_t), c(k̃_t)) and
    the same-token key cosine with and without the recurrent term (NaN where the mixer has no recurrent
    key term, i.e. no ``hook_k_pre``/``hook_feedback``). Empty if the mixer's ``hook_k`` is not
    ``[batch, pos, head, d_k]``."""
    kinds = task.token_kind(tokens)
    kind_names = kind_names or {}
    rows = []
    for layer in range(model.cfg.n_layers):
        names = {n: f"blocks.{layer}.attn.hook_{n}" for n in ("k", "k_pre", "feedback")}
        if not _has(model, names["k"]):
            continue
        recurrent = _has(model, names["k_pre"]) and _has(model, names["feedback"])
        wanted = {names["k"], names["k_pre"]} if recurrent else {names["k"]}
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in wanted)
        k = cache[names["k"]]
        if k.dim() != 4:
            continue
        same = same_token_cosine(k, tokens, kinds)
        if recurrent:
            k_pre = cache[names["k_pre"]]
            slow, rec = recurrent_key_parts(k_pre, k)
            share = rec.norm(dim=-1) / (slow.norm(dim=-1) + rec.norm(dim=-1) + 1e-12)  # [batch, pos, head]
            cos = F.cosine_similarity(slow + rec, slow, dim=-1)  # [batch, pos, head]
            same = same_token_cosine(slow + rec, tokens, kinds)
            without = same_token_cosine(slow, tokens, kinds)
            same = same.merge(without.rename(columns={"same_token_cos": "same_token_cos_without"})[
                ["kind", "same_token_cos_without"]], on="kind", how="outer")
        for kind in sorted(set(kinds.flatten().tolist()) - {0}):
            at = kinds == kind  # [batch, pos]
            row = {"layer": layer, "kind": kind_names.get(kind, str(kind)), "n_positions": int(at.sum())}
            if recurrent:
                row["recurrent_share"] = float(share[at].mean())
                row["cos_with_without"] = float(cos[at].mean())
            else:
                row["recurrent_share"] = float("nan")
                row["cos_with_without"] = float("nan")
            match = same[same["kind"] == kind]
            row["same_token_cos"] = float(match["same_token_cos"].iloc[0]) if len(match) else float("nan")
            row["same_token_cos_without"] = (float(match["same_token_cos_without"].iloc[0])
                                             if recurrent and len(match) else float("nan"))
            rows.append(row)
    return pd.DataFrame(rows)
