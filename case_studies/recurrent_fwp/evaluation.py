"""Test accuracy of one trained model: per scored answer and per sequence (all its answers right), with
Wilson 95 % intervals (over test sequences, not seeds), and per kind of answer (:func:`answer_kind`)."""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from workbench.tasks import CodeExecution, ListOps, TaskBatch

from .baselines import last_assignment


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``successes / n`` (95 % for z = 1.96)."""
    if n < 1:
        raise ValueError(f"wilson needs n ≥ 1 trials, got {n}")
    if not 0 <= successes <= n:
        raise ValueError(f"wilson needs 0 ≤ successes ≤ n, got {successes} of {n}")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


@torch.no_grad()
def correct_answers(model, batch: TaskBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct ``[n_answers]`` bool, sequence index of each answer) for the batch's scored predictions."""
    logits = model(batch.tokens)[:, :-1]  # [batch, pos-1, vocab]
    mask = batch.loss_mask
    predicted = logits[mask].argmax(-1)
    target = batch.tokens[:, 1:][mask]
    seq = torch.arange(mask.shape[0])[:, None].expand_as(mask)[mask]
    return predicted == target, seq


def answer_kind(task, words: list[str], t: int) -> str:
    """What an answer (predicted at position ``t`` of the sequence ``words``) asks of a model. Code execution:
    whether the value still equals the queried variable's last assigned literal (a lookup suffices) or has
    changed since (``++``/``--``, or a conditional assignment that did not run: the state must be tracked).
    ListOps: the root operator."""
    if isinstance(task, CodeExecution):
        return "equals its last assignment" if words[t + 1] == last_assignment(words, t) else "changed since"
    if isinstance(task, ListOps):
        return "root " + next(w for w in words if w != "PAD")[1:]
    raise ValueError(f"no answer kinds for a {type(task).__name__} task")


def test_accuracy(model, task, n_sequences: int, seed: int, batch_size: int = 128) -> dict:
    """Answer and sequence accuracy on ``n_sequences`` fresh sequences drawn with ``seed``, with Wilson
    intervals, and answer accuracy per :func:`answer_kind` (``by_kind``); ``model`` is put in eval mode."""
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    hits, answers, seq_hits = 0, 0, 0
    kinds: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for start in range(0, n_sequences, batch_size):
        batch = task.sample(min(batch_size, n_sequences - start), gen)
        correct, seq = correct_answers(model, batch)
        hits += int(correct.sum())
        answers += len(correct)
        wrong = torch.zeros(batch.tokens.shape[0], dtype=torch.long).index_add_(0, seq, (~correct).long())
        seq_hits += int((wrong == 0).sum())
        positions = batch.loss_mask.nonzero().tolist()  # [n_answers, 2], in the order of ``correct``
        words = {b: task.decode(batch.tokens[b]) for b in set(seq.tolist())}
        for (b, t), ok in zip(positions, correct.tolist()):
            tally = kinds[answer_kind(task, words[b], t)]
            tally[0] += int(ok)
            tally[1] += 1
    by_kind = [{"kind": k, "accuracy": c / n, "ci95": list(wilson(c, n)), "n": n} for k, (c, n) in sorted(kinds.items())]
    return {"n_sequences": n_sequences, "seed": seed, "n_answers": answers,
            "answer_accuracy": hits / answers, "answer_ci95": list(wilson(hits, answers)),
            "sequence_accuracy": seq_hits / n_sequences, "sequence_ci95": list(wilson(seq_hits, n_sequences)),
            "by_kind": by_kind}
