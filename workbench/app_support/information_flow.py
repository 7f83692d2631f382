"""The Information flow page's inputs: a clean and a corrupted sequence of the same length and the two tokens whose
logit difference at the last position is the metric, built from the sidebar's sequence (a task's query with the
key it reads changed, one token changed, or both typed), and the sweeps the page draws."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from ..analysis.knockout import knockout_effects, logit_difference
from ..analysis.patching import activation_patching, attribution_agreement, attribution_patching, head_breakdown
from .sequences import TokenSequence, check_sequence, parse_token_ids


@dataclass(frozen=True)
class FlowInputs:
    clean: tuple[int, ...]
    corrupted: tuple[int, ...]
    answer: int  # the metric is logit[answer] − logit[distractor] at the last position
    distractor: int
    note: str  # what was changed, for the page

    @property
    def changed(self) -> list[int]:
        return [i for i, (a, b) in enumerate(zip(self.clean, self.corrupted)) if a != b]


def queries(seq: TokenSequence) -> list[int]:
    """The scored positions of ``seq`` whose token is the key of an association stored earlier (an MQAR query)."""
    return [t for t in seq.scored if t + 1 < len(seq) and _stored(seq, t) is not None]


def _stored(seq: TokenSequence, t: int):
    found = [(k, v) for k, v in seq.pairs if k < t and seq.tokens[k] == seq.tokens[t]]
    return found[-1] if found else None


def task_pair(seq: TokenSequence, query: int, d_vocab: int) -> FlowInputs:
    """Clean: ``seq`` up to the query at ``query``; corrupted: the same with the stored key that query reads replaced
    by the nearest token id the clean input does not contain (so the query finds no association). The answer is
    the value the task expects next, the distractor the value of another stored association."""
    pair = _stored(seq, query) if 0 <= query < len(seq) - 1 else None
    if pair is None:
        raise ValueError(f"position {query} is not a query of an association stored earlier in this sequence; the "
                         f"queries are {queries(seq) or 'none'} (sample the sequence from a task such as MQAR, or "
                         "change one token instead)")
    key_pos, value_pos = pair
    clean = seq.tokens[: query + 1]
    answer = seq.tokens[query + 1]
    key = seq.tokens[key_pos]
    unused = sorted((i for i in range(d_vocab) if i not in clean and i != answer), key=lambda i: (abs(i - key), i))
    if not unused:
        raise ValueError("every token id of the vocabulary occurs in the clean input; change one token instead")
    corrupted = list(clean)
    corrupted[key_pos] = unused[0]
    others = [seq.tokens[v] for k, v in seq.pairs if k < query and seq.tokens[v] != answer]
    distractor = others[0] if others else (answer + 1) % d_vocab
    note = (f"the key at position {key_pos} (token {key}, stored with value {seq.tokens[value_pos]} at position "
            f"{value_pos}) becomes token {unused[0]}; the query at position {query} then finds no association")
    return FlowInputs(tuple(clean), tuple(corrupted), int(answer), int(distractor), note)


@torch.no_grad()
def default_query(model, seq: TokenSequence) -> int:
    """The query the page opens on: the first whose task pair moves the metric by at least half as much as the
    query that moves it most (a corruption the model does not notice has nothing to localise)."""
    found = queries(seq)
    gaps = []
    for t in found:
        pair = task_pair(seq, t, model.cfg.d_vocab)
        logits = model(torch.tensor([pair.clean, pair.corrupted]))[:, -1]
        diff = logits[:, pair.answer] - logits[:, pair.distractor]
        gaps.append(float((diff[0] - diff[1]).abs()))
    return found[next(i for i, g in enumerate(gaps) if g >= 0.5 * max(gaps))]


def edited_pair(model, seq: TokenSequence, position: int, token: int) -> FlowInputs:
    """Clean: ``seq``; corrupted: ``seq`` with ``token`` at ``position``. Metric tokens: :func:`model_choice`."""
    d_vocab = model.cfg.d_vocab
    if not 0 <= position < len(seq):
        raise ValueError(f"position must be in [0, {len(seq) - 1}], got {position}")
    if not isinstance(token, int) or not 0 <= token < d_vocab:
        raise ValueError(f"the corrupted token must be an id in [0, {d_vocab - 1}], got {token!r}")
    if seq.tokens[position] == token:
        raise ValueError(f"position {position} already holds token {token}: choose a different token to corrupt it")
    corrupted = list(seq.tokens)
    corrupted[position] = token
    answer, distractor = model_choice(model, seq.tokens, corrupted)
    return FlowInputs(seq.tokens, tuple(corrupted), answer, distractor,
                      f"position {position}: token {seq.tokens[position]} becomes {token}")


def typed_pair(model, clean_text: str, corrupted_text: str) -> FlowInputs:
    """Two typed lists of token ids of the same length. Metric tokens: :func:`model_choice`."""
    clean, corrupted = parse_token_ids(clean_text), parse_token_ids(corrupted_text)
    check_sequence(model, clean)
    check_sequence(model, corrupted)
    if len(clean) != len(corrupted):
        raise ValueError(f"the clean and corrupted inputs must have the same number of tokens (patching pairs them "
                         f"position by position); got {len(clean)} and {len(corrupted)}")
    diff = [i for i, (a, b) in enumerate(zip(clean, corrupted)) if a != b]
    if not diff:
        raise ValueError("the clean and corrupted inputs are identical: change at least one token")
    answer, distractor = model_choice(model, clean, corrupted)
    return FlowInputs(tuple(clean), tuple(corrupted), answer, distractor, f"{len(diff)} position(s) differ: {diff}")


@torch.no_grad()
def model_choice(model, clean, corrupted) -> tuple[int, int]:
    """Default metric tokens: the model's top next token at the last position on the clean input (answer) and on
    the corrupted one (distractor; the clean run's second choice when both runs agree)."""
    logits = model(torch.tensor([list(clean), list(corrupted)]))[:, -1]
    answer, other = int(logits[0].argmax()), int(logits[1].argmax())
    if other == answer:
        other = int(logits[0].topk(2).indices[1])
    return answer, other


def check_metric_tokens(answer: int, distractor: int, d_vocab: int) -> None:
    for name, tok in (("answer", answer), ("distractor", distractor)):
        if not isinstance(tok, int) or not 0 <= tok < d_vocab:
            raise ValueError(f"the {name} token must be an id in [0, {d_vocab - 1}], got {tok!r}")
    if answer == distractor:
        raise ValueError("the answer and distractor tokens are the same: their logit difference is always 0")


def _tensors(inputs: FlowInputs) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor([inputs.clean]), torch.tensor([inputs.corrupted])


def sweep(model, inputs: FlowInputs, site: str, direction: str) -> pd.DataFrame:
    """The layer × position patching sweep of one site (whole site, batch of one)."""
    clean, corrupted = _tensors(inputs)
    return activation_patching(model, clean, corrupted, (inputs.answer, inputs.distractor), sites=[site],
                               direction=direction, progress=False)


def heads(model, inputs: FlowInputs, site: str, layer: int, position: int, direction: str) -> pd.DataFrame:
    clean, corrupted = _tensors(inputs)
    return head_breakdown(model, clean, corrupted, (inputs.answer, inputs.distractor), site, layer, position,
                          direction)


def attribution(model, inputs: FlowInputs, site: str, direction: str, real: pd.DataFrame
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attribution patching's estimate of the same sweep, and its agreement with ``real``."""
    clean, corrupted = _tensors(inputs)
    estimate = attribution_patching(model, clean, corrupted, (inputs.answer, inputs.distractor), sites=[site],
                                    direction=direction, progress=False)
    return estimate, attribution_agreement(real, estimate)


def knockout(model, inputs: FlowInputs, layer: int, head) -> pd.DataFrame:
    """Path knockout on the clean input: for every (source, target ≥ source), the change of logit(answer) −
    logit(distractor) at the last position when what ``source`` writes into ``head``'s memory of ``layer`` (None:
    every head's) is not read at ``target``."""
    tokens, _ = _tensors(inputs)
    return knockout_effects(model, tokens, layer, head=head, metric=logit_difference(inputs.answer, inputs.distractor))


def knockout_heads(model, inputs: FlowInputs, layer: int, source: int, target: int) -> pd.DataFrame:
    """The knockout of one (source, target) pair for each head alone (one row per head)."""
    tokens, _ = _tensors(inputs)
    metric = logit_difference(inputs.answer, inputs.distractor)
    return pd.concat([knockout_effects(model, tokens, layer, head=h, metric=metric, sources=[source], targets=[target])
                      for h in range(model.cfg.n_heads)], ignore_index=True)
