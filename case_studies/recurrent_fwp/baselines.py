"""What simple rules score on the same test sequences the models are scored on: the floor a model has to
clear before it can be said to execute anything.

- ``majority``: always the most frequent answer of the test set.
- ``last assignment`` (code execution): the literal of the queried variable's last ``v = n`` statement,
  conditional or not, ignoring every ``++``/``--`` — what a model that only looks up the latest binding
  (an associative recall) answers.
- ``majority per root operator`` (ListOps): the most frequent answer of the test sequences with the same
  root operator (e.g. 9 for MAX, 0 for MIN) — what a model that reads only the first token answers.
"""

from __future__ import annotations

from collections import Counter

import torch

from workbench.tasks import CodeExecution, ListOps


def _answers(task, n_sequences: int, seed: int, batch_size: int = 128):
    """(sequence words without padding, scored answer positions) for the test set of ``evaluation.test_accuracy``
    (the same seed, drawn ``batch_size`` at a time from one generator)."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n_sequences, batch_size):
        batch = task.sample(min(batch_size, n_sequences - start), gen)
        for b in range(batch.tokens.shape[0]):
            words = task.decode(batch.tokens[b])
            yield words, batch.loss_mask[b].nonzero().flatten().tolist()


def last_assignment(words: list[str], t: int) -> str:
    """The literal last assigned (``v = n``) to the variable queried at ``t`` (``print v ;`` ending at t)."""
    var = words[t - 1]
    for i in range(t - 3, 0, -1):
        if words[i] == "=" and words[i - 1] == var:
            return words[i + 1]
    return ""


def baseline_accuracy(task, n_sequences: int, seed: int) -> dict[str, float]:
    """Answer accuracy of the rules above on the test set (``n_sequences`` sequences drawn with ``seed``)."""
    targets, last, roots = [], [], []
    for words, scored in _answers(task, n_sequences, seed):
        for t in scored:
            targets.append(words[t + 1])
            if isinstance(task, CodeExecution):
                last.append(last_assignment(words, t))
            else:
                roots.append(next(w for w in words if w != "PAD"))
    if not targets:
        raise ValueError("the test set has no scored answers")
    top = Counter(targets).most_common(1)[0][0]
    out = {"majority": sum(a == top for a in targets) / len(targets)}
    if isinstance(task, CodeExecution):
        out["last assignment"] = sum(a == b for a, b in zip(last, targets)) / len(targets)
    elif isinstance(task, ListOps):
        by_root: dict[str, Counter] = {}
        for root, target in zip(roots, targets):
            by_root.setdefault(root, Counter())[target] += 1
        out["majority per root operator"] = sum(c.most_common(1)[0][1] for c in by_root.values()) / len(targets)
    else:
        raise ValueError(f"no baselines for a {type(task).__name__} task")
    return out
