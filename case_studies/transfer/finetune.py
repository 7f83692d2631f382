"""The quirky fine-tuning phase (question 3): after text pretraining, a copy of the model is trained on windows of
quirky lines only, with the loss on the answer tokens alone — as Mallen et al. (2023) fine-tune pretrained language
models on their quirky data. The latent-knowledge probe reads this fine-tuned copy; the lenses and steering read the
pretrained model, so questions 1 and 2 are not changed by it.
"""

from __future__ import annotations

import dataclasses
import random

import torch

from workbench import train
from workbench.tasks import TaskBatch, TextLM
from workbench.training import TrainConfig

from .corpus import PERSONAS, Item, draw_item


def encode(task: TextLM, text: str) -> list[int]:
    """Token ids of ``text`` as it stands in the training stream (every synthetic line follows a newline)."""
    return task.data.tokenizer.encode("\n" + text)


def line_tokens(task: TextLM, item: Item) -> list[int]:
    """The tokens of ``item``'s line; ValueError unless they are its prompt's tokens plus one answer token."""
    prompt, line = encode(task, item.prompt()), encode(task, item.line())
    if len(line) != len(prompt) + 1 or line[:-1] != prompt:
        raise ValueError(f"the tokenizer does not end {item.line()!r} with one answer token after its prompt")
    return line


def quirky_batch(task: TextLM, n_seqs: int, seq_len: int, rng: random.Random) -> TaskBatch:
    """``n_seqs`` windows of ``seq_len`` tokens cut from a stream of quirky lines (persona at even odds, drawn by
    :func:`~.corpus.draw_item`); ``loss_mask`` marks only the predictions of the answer tokens (yes / no)."""
    if n_seqs < 1 or seq_len < 2:
        raise ValueError(f"quirky_batch needs n_seqs ≥ 1 and seq_len ≥ 2, got {n_seqs} and {seq_len}")
    ids: list[int] = []
    answers: list[int] = []
    while len(ids) < n_seqs * seq_len:
        toks = line_tokens(task, draw_item(rng, rng.choice(PERSONAS)))
        answers.append(len(ids) + len(toks) - 1)
        ids += toks
    tokens = torch.tensor(ids[: n_seqs * seq_len]).view(n_seqs, seq_len)
    is_answer = torch.zeros(n_seqs * seq_len, dtype=torch.bool)
    is_answer[[a for a in answers if a < n_seqs * seq_len]] = True
    return TaskBatch(tokens=tokens, loss_mask=is_answer.view(n_seqs, seq_len)[:, 1:])


def finetune_quirky(model, task: TextLM, cfg: TrainConfig, seed: int, progress: bool = False):
    """(a copy of ``model`` trained ``cfg.steps`` steps on :func:`quirky_batch` batches, its training history):
    ``cfg.batch_size`` windows of the task's ``seq_len`` a step, step ``i`` drawn from a generator seeded by
    (``seed``, i), so a resumed run sees the same data; the history's eval loss is on the task's text."""
    cfg = dataclasses.replace(cfg, seed=seed)

    def batches(step: int) -> TaskBatch:
        return quirky_batch(task, cfg.batch_size, task.seq_len, random.Random(f"quirky-finetune-{seed}-{step}"))

    result = train(model, task, cfg, progress=progress, batches=batches)
    return result.model.eval(), result.history
