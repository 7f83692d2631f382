"""Choosing the next token from logits: greedy, or sampled with temperature, top-k, top-p and a frequency
penalty — the behaviour of TransformerLens' ``utils.sample_logits`` (read in transformer_lens 4.3,
``utilities/logits_utils.py``; written here, with explicit errors instead of asserts and a seeded generator).
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float, Int


def check_sampling(do_sample: bool, temperature: float, top_k: Optional[int], top_p: Optional[float],
                   freq_penalty: float) -> None:
    """ValueError naming the bad argument."""
    if not isinstance(do_sample, bool):
        raise ValueError(f"do_sample must be a bool, got {do_sample!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature >= 0:
        raise ValueError(f"temperature must be a number ≥ 0 (0: greedy), got {temperature!r}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an int ≥ 1, got {top_k!r}")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or a number in (0, 1], got {top_p!r}")
    if isinstance(freq_penalty, bool) or not isinstance(freq_penalty, (int, float)) or not freq_penalty >= 0:
        raise ValueError(f"freq_penalty must be a number ≥ 0, got {freq_penalty!r}")


def sample_logits(
    logits: Float[torch.Tensor, "batch vocab"],
    *,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    freq_penalty: float = 0.0,
    tokens: Optional[Int[torch.Tensor, "batch pos"]] = None,
    generator: Optional[torch.Generator] = None,
) -> Int[torch.Tensor, "batch"]:
    """The next token of each sequence. Greedy (argmax) when ``do_sample`` is False or ``temperature`` is 0;
    otherwise logits / temperature, minus ``freq_penalty`` × the count of each token in ``tokens``, keep the
    ``top_k`` largest (ties kept), then the smallest set whose probability reaches ``top_p`` (the first token
    always kept), and draw one with ``generator``."""
    check_sampling(do_sample, temperature, top_k, top_p, freq_penalty)
    if not do_sample or temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if freq_penalty > 0:
        if tokens is None:
            raise ValueError("freq_penalty needs the tokens generated so far (tokens=...)")
        counts = torch.stack([torch.bincount(t, minlength=logits.shape[-1]) for t in tokens])  # [batch, vocab]
        logits = logits - freq_penalty * counts[:, : logits.shape[-1]].to(logits)
    if top_k is not None:
        kth = logits.topk(min(top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        ordered, order = logits.sort(dim=-1, descending=True)
        before = ordered.softmax(-1).cumsum(-1) - ordered.softmax(-1)  # probability of the better tokens
        drop = before >= top_p  # the token that crosses top_p stays
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]
