"""Validation loss, perplexity and bits per byte of a model on the held-out documents of a TextLM task."""

from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from ..model import lm_loss


def validation_windows(ids: torch.Tensor, seq_len: int) -> list[torch.Tensor]:
    """Windows of ``seq_len`` tokens that overlap by one, so that every token but the first is predicted
    exactly once (from at most seq_len − 1 tokens of context); the last window may be shorter."""
    step = seq_len - 1
    return [ids[s: s + seq_len] for s in range(0, max(len(ids) - 1, 1), step) if len(ids[s: s + seq_len]) >= 2]


@torch.no_grad()
def evaluate_text(model, task, batch_size: int = 16, progress: bool = False) -> dict[str, float]:
    """``val_loss`` (mean next-token nats over the n − 1 predicted validation tokens), ``val_ppl`` =
    exp(val_loss) and ``val_bpb`` = total nats / ln 2 / UTF-8 bytes of the predicted tokens (comparable
    across tokenizers). The model is put back in the train/eval mode it was in."""
    data = task.data
    if model.cfg.d_vocab < task.d_vocab:
        raise ValueError(f"the model's d_vocab {model.cfg.d_vocab} is smaller than the tokenizer's {task.d_vocab}")
    windows = validation_windows(data.val_ids, task.seq_len)
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    full = [w for w in windows if len(w) == task.seq_len]
    groups = [torch.stack(full[i: i + batch_size]) for i in range(0, len(full), batch_size)]
    groups += [w[None] for w in windows if len(w) != task.seq_len]
    for tokens in tqdm(groups, desc="validation", disable=not progress):
        total += float(lm_loss(model(tokens), tokens, reduction="sum"))
        count += tokens[:, 1:].numel()
    model.train(was_training)
    first_bytes = len(data.tokenizer.decode([int(data.val_ids[0])]).encode("utf-8"))
    loss = total / count
    bpb = total / math.log(2) / (data.val_bytes - first_bytes)
    return {"val_loss": loss, "val_ppl": math.exp(loss), "val_bpb": bpb, "val_tokens": count}
