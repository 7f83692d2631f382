"""Probe the retrieval model's memory: is each stored pair in W, read with its own write key?

The paper measures only the model's loss, i.e. what W returns for the *query* projection of a key. The
probe reads W (at ``hook_memory``, after every pair is written) with each answer's *write* key k_i (at
``hook_k``, position = the key's last occurrence), so it separates "the association is not in W"
(storage failed: capacity, interference, a stale value in setting 2) from "it is there but the query
does not find it" (the query projection failed). Per real query of a batch sampled with
``all_queries=True``:

    probe_decodes    argmax read(W, k_i) == target          read = Wᵀk (÷ zᵀk for the sum rule; fwm: LayerNorm)
    fidelity         cos(read(W, k_i), onehot(target))
    retrieval_error  ‖read(W, k_i) − onehot(target)‖
    model_correct    argmax ŷ(query) == target;  model_loss = 0.5‖onehot(target) − ŷ‖²
    qk_cos           cos(φ(q), φ(k_i)) — does the query point at the write key?
    occurrences      how often the key was written (1 in setting 1)
"""

from __future__ import annotations

import pandas as pd
import torch
import torch.nn.functional as F

from .model import HookedRetriever, read_memory
from ..tasks.retrieval import RetrievalBatch


@torch.no_grad()
def probe_memory(model: HookedRetriever, batch: RetrievalBatch) -> pd.DataFrame:
    """One row per real query of ``batch``: seq, key, target, target_pos and the metrics above."""
    if not isinstance(model, HookedRetriever):
        raise TypeError(f"probe_memory needs a HookedRetriever, got {type(model).__name__}")
    if model.cfg.feature_map == "softmax":
        raise ValueError("softmax attention keeps no memory matrix to probe; probe a sum- or delta-rule retriever")
    if not isinstance(batch, RetrievalBatch):
        raise TypeError("probe_memory needs a RetrievalBatch (Retrieval.sample(..., all_queries=True))")
    names = ("hook_k", "hook_q", "hook_memory", "hook_out")
    _, cache = model.run_with_cache(batch.keys, batch.values, batch.queries, form="memory",
                                    names_filter=lambda n: n in names)
    k, q, W, y = (cache[n] for n in names)
    pos = batch.target_pos[..., None].expand(-1, -1, k.shape[-1])
    k_i = k.gather(1, pos)  # [batch, query, d_key]: each answer's write key
    r = read_memory(W, k_i, model.cfg.update, model.cfg.eps)  # [batch, query, d_v]
    onehot = F.one_hot(batch.targets, model.cfg.num_keys).to(r.dtype)
    occurrences = (batch.keys[:, None, :] == batch.queries[:, :, None]).sum(-1)  # [batch, query]
    columns = {
        "probe_decodes": r.argmax(-1) == batch.targets,
        "fidelity": F.cosine_similarity(r, onehot, dim=-1),
        "retrieval_error": (r - onehot).norm(dim=-1),
        "model_correct": y.argmax(-1) == batch.targets,
        "model_loss": 0.5 * (onehot - y).pow(2).sum(-1),
        "qk_cos": F.cosine_similarity(q, k_i, dim=-1),
    }
    mask = batch.query_mask
    seq = torch.arange(mask.shape[0])[:, None].expand_as(mask)
    data = {"seq": seq[mask], "key": batch.queries[mask], "target": batch.targets[mask],
            "target_pos": batch.target_pos[mask], "occurrences": occurrences[mask],
            **{name: col[mask] for name, col in columns.items()}}
    return pd.DataFrame({name: col.numpy() for name, col in data.items()})


def summarize_probe(df: pd.DataFrame) -> dict[str, float]:
    """Means of the probe table, plus how often the probe and the model disagree."""
    decodes, correct = df["probe_decodes"].astype(bool), df["model_correct"].astype(bool)
    return {
        "probe_decodes": float(decodes.mean()),
        "fidelity": float(df["fidelity"].mean()),
        "retrieval_error": float(df["retrieval_error"].mean()),
        "model_accuracy": float(correct.mean()),
        "model_loss": float(df["model_loss"].mean()),
        "qk_cos": float(df["qk_cos"].mean()),
        "stored_not_found": float((decodes & ~correct).mean()),
        "found_not_stored": float((~decodes & correct).mean()),
    }
