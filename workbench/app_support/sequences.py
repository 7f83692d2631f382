"""The sequence the app looks at: typed token ids, typed text (encoded with the model's tokenizer) or a sample
from a synthetic task.

A :class:`TokenSequence` carries, beside its tokens, the positions whose next token its task scores and
the (key position, value position) pairs it asks the model to store — both empty for typed text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional

import torch

from ..tasks import MQAR, task_from_dict

MAX_TOKENS = 512  # effective attention is O(pos³) and its heatmap pos² cells: keep the page responsive


@dataclass(frozen=True)
class TokenSequence:
    tokens: tuple[int, ...]
    source: str  # where it came from, for titles
    scored: tuple[int, ...] = ()  # positions t whose prediction of tokens[t+1] the task scores
    pairs: tuple[tuple[int, int], ...] = ()  # (key_pos, value_pos) associations to store
    task_json: Optional[str] = None  # the task it was sampled from (canonical JSON) and its seed
    seed: Optional[int] = None
    labels: tuple[str, ...] = ()  # each token as a string (typed text: the tokenizer's pieces); () = the ids

    def __len__(self) -> int:
        return len(self.tokens)


def parse_token_ids(text: str) -> list[int]:
    """'3 17, 5' → [3, 17, 5]; ValueError naming the first entry that is not an integer."""
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    if not parts:
        raise ValueError("the sequence is empty: type token ids separated by spaces or commas, e.g. 3 17 5")
    out = []
    for i, p in enumerate(parts):
        try:
            out.append(int(p))
        except ValueError:
            raise ValueError(f"entry {i} ({p!r}) is not a token id: token ids are integers, "
                             "separated by spaces or commas") from None
    return out


def check_sequence(model, tokens: list[int]) -> None:
    """ValueError with the fix if ``model`` cannot run ``tokens`` or the app would not show them."""
    if len(tokens) > MAX_TOKENS:
        raise ValueError(f"the sequence has {len(tokens)} tokens; the app shows at most {MAX_TOKENS} "
                         "(its attention maps are pos × pos): shorten it")
    model.check_tokens(torch.tensor(tokens, dtype=torch.long))


def typed_sequence(model, text: str) -> TokenSequence:
    tokens = parse_token_ids(text)
    check_sequence(model, tokens)
    return TokenSequence(tuple(tokens), "typed sequence")


def text_sequence(model, text: str) -> TokenSequence:
    """``text`` encoded with the model's tokenizer (no BOS added), each token labelled with its string."""
    if getattr(model, "tokenizer", None) is None:
        raise ValueError("this model has no tokenizer (its directory had no tokenizer.json): type token ids instead")
    if not text or not text.strip():
        raise ValueError("the text is empty: type some text to encode with the model's tokenizer")
    tokens = model.to_tokens(text)[0].tolist()
    if not tokens:
        raise ValueError("the tokenizer encoded the text to no tokens: type other text")
    check_sequence(model, tokens)
    return TokenSequence(tuple(tokens), "typed text", labels=tuple(model.to_str_tokens(torch.tensor(tokens))))


def token_labels(seq: TokenSequence) -> list[str]:
    """What the axes show for each position: the token's string when the sequence has them, else its id."""
    return list(seq.labels) if seq.labels else [str(t) for t in seq.tokens]


def parse_pairs(text: str, n_pos: int) -> tuple[tuple[int, int], ...]:
    """'0:1 2:3' (key_pos:value_pos, separated by spaces or commas) → ((0, 1), (2, 3))."""
    parts = [p for p in re.split(r"[\s,;]+", text.strip()) if p]
    if not parts:
        raise ValueError("no pairs given: write key_pos:value_pos pairs, e.g. 0:1 2:3")
    pairs = []
    for p in parts:
        m = re.fullmatch(r"(-?\d+)[:\-](-?\d+)", p)
        if not m:
            raise ValueError(f"{p!r} is not a pair: write key_pos:value_pos, e.g. 0:1")
        a, b = int(m.group(1)), int(m.group(2))
        if not (0 <= a < n_pos and 0 <= b < n_pos):
            raise ValueError(f"pair {p} points outside the sequence (positions 0..{n_pos - 1})")
        pairs.append((a, b))
    return tuple(pairs)


def format_pairs(pairs) -> str:
    return " ".join(f"{a}:{b}" for a, b in pairs)


def default_task(cfg, recipe_task: Optional[dict] = None) -> dict:
    """The recipe's task if the model can run it, else an MQAR task sized to the model."""
    if recipe_task is not None:
        try:
            fit_task(cfg, recipe_task)
            return dict(recipe_task)
        except ValueError:
            pass
    seq_len = min(cfg.n_ctx, cfg.d_vocab - 1, MAX_TOKENS) // 2 * 2
    if seq_len < 4:
        raise ValueError(f"no synthetic task fits a vocabulary of {cfg.d_vocab} and n_ctx {cfg.n_ctx}; type a sequence")
    return MQAR(vocab_size=cfg.d_vocab, seq_len=seq_len, num_kv_pairs=max(1, seq_len // 8)).to_dict()


def fit_task(cfg, task: dict):
    """The task object for ``task`` (its to_dict()), or a ValueError saying why this model cannot run it."""
    if not isinstance(task, dict):
        raise ValueError(f"a task must be a JSON object like {MQAR().to_dict()}, got {type(task).__name__}")
    try:
        obj = task_from_dict(task)
    except TypeError as e:  # an unknown or missing argument of the task's dataclass
        raise ValueError(f"the task settings are not valid: {e}") from None
    except ValueError as e:
        raise ValueError(f"the task settings are not valid: {e}") from None
    if obj.d_vocab > cfg.d_vocab:
        raise ValueError(f"the task uses {obj.d_vocab} token ids but the model's vocabulary has {cfg.d_vocab}")
    limit = min(MAX_TOKENS, cfg.n_ctx) if cfg.positional == "learned" else MAX_TOKENS
    if obj.seq_len > limit:
        raise ValueError(f"the task's sequences have {obj.seq_len} tokens; this model and app take at most {limit}")
    return obj


def parse_task(text: str) -> dict:
    try:
        task = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"the task settings are not valid JSON: {e}") from None
    if not isinstance(task, dict):
        raise ValueError("the task settings must be a JSON object, e.g. " + json.dumps(MQAR().to_dict()))
    return task


def task_sequence(cfg, task: dict, seed: int) -> TokenSequence:
    """One sequence of ``task`` drawn with ``seed``."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"the seed must be a non-negative integer, got {seed!r}")
    obj = fit_task(cfg, task)
    batch = obj.sample(1, torch.Generator().manual_seed(seed))
    scored = tuple(int(t) for t in batch.loss_mask[0].nonzero()[:, 0])
    pairs = tuple((int(a), int(b)) for a, b in batch.pairs[0]) if batch.pairs else ()
    return TokenSequence(tuple(batch.tokens[0].tolist()), f"{task.get('name', 'task')} sample, seed {seed}", scored,
                         pairs, json.dumps(task, sort_keys=True), seed)
