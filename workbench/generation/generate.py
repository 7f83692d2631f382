"""``model.generate``: sample a continuation token by token, carrying every layer's state.

With ``use_past_kv_cache`` (the default) the prompt runs once and each new token runs alone through the
model with a :class:`~workbench.mixers.step.ModelStepCache`: a fast-weight layer continues from its state
(O(1) per token in the sequence length), a softmax layer from its key/value cache (O(pos) per token), so
the logits equal those of re-running the whole prefix (to float rounding). A model with a layer whose
mixer cannot continue (``Mixer.step_unsupported``) re-runs the prefix for every token and warns, naming
the layer. Every call runs through the hook points, so hooks fire at each step (``pos`` = 1 after the
prompt). The signature follows TransformerLens' ``HookedTransformer.generate``; ``seed``/``generator``
make sampling repeatable.
"""

from __future__ import annotations

import warnings
from typing import Literal, Optional, Sequence, Union

import torch
from tqdm.auto import tqdm

from .sampling import check_sampling, sample_logits

ReturnType = Literal["input", "str", "tokens"]


def _eos_ids(model, stop_at_eos: bool, eos_token_id) -> list[int]:
    """The token ids that end a sequence (empty: none known, generation runs max_new_tokens)."""
    if not stop_at_eos:
        return []
    if eos_token_id is None:
        eos = getattr(model.tokenizer, "eos_token_id", None)
        return [] if eos is None else [int(eos)]
    ids = [eos_token_id] if isinstance(eos_token_id, int) else list(eos_token_id)
    for i in ids:
        if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < model.cfg.d_vocab:
            raise ValueError(f"eos_token_id must be a token id in [0, {model.cfg.d_vocab - 1}] or a list of them, "
                             f"got {eos_token_id!r}")
    return ids


def _prompt_tokens(model, input, prepend_bos: Optional[bool], padding_side: Optional[str]) -> torch.Tensor:
    if isinstance(input, str) or (isinstance(input, (list, tuple)) and input and all(isinstance(s, str) for s in input)):
        texts = [input] if isinstance(input, str) else list(input)
        rows = [model.to_tokens(t, prepend_bos=prepend_bos)[0] for t in texts]
        if len({len(r) for r in rows}) > 1:
            raise ValueError(
                f"the prompts encode to different lengths {[len(r) for r in rows]}: a fast-weight layer has no "
                "attention mask, so padding would be written into its state; generate one prompt at a time, or "
                "pass prompts of equal token length")
        if padding_side not in (None, "left", "right"):
            raise ValueError(f"padding_side must be None, 'left' or 'right', got {padding_side!r}")
        return torch.stack(rows)
    if isinstance(input, torch.Tensor) or (isinstance(input, (list, tuple)) and input):
        return model.check_tokens(input)
    raise ValueError("input must be a prompt (str), a list of prompts, or token ids [batch, pos] / [pos]; got "
                     f"{input!r}")


def step_unsupported(model) -> dict[int, str]:
    """Layers whose mixer cannot continue from a cache, with the mixer's reason (empty: all can)."""
    return {i: why for i, b in enumerate(model.blocks)
            if b.has_mixer and (why := b.attn.step_unsupported()) is not None}


@torch.no_grad()
def generate(
    model,
    input: Union[str, Sequence[str], torch.Tensor, list] = "",
    max_new_tokens: int = 10,
    stop_at_eos: bool = True,
    eos_token_id: Union[int, Sequence[int], None] = None,
    do_sample: bool = True,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    temperature: float = 1.0,
    freq_penalty: float = 0.0,
    use_past_kv_cache: bool = True,
    prepend_bos: Optional[bool] = None,
    padding_side: Optional[str] = None,
    return_type: Optional[ReturnType] = "input",
    verbose: bool = True,
    *,
    seed: Optional[int] = None,
    generator: Optional[torch.Generator] = None,
):
    """Continue ``input`` by up to ``max_new_tokens`` tokens; returns the prompt and its continuation.

    input: text, a list of texts of equal token length, or token ids ``[batch, pos]`` / ``[pos]``.
    Sampling: greedy with ``do_sample=False`` or ``temperature=0``; else temperature, ``top_k``, ``top_p``,
    ``freq_penalty`` (:func:`~.sampling.sample_logits`), drawn with ``generator`` or a new one seeded with
    ``seed``. Stopping: a sequence ends at a token of ``eos_token_id`` (an id or a list of ids; None: the
    tokenizer's ``eos_token_id`` if it has one) when ``stop_at_eos``; an ended sequence is padded with its
    stop token; generation stops when every sequence has ended. ``use_past_kv_cache``: carry each layer's
    state (False: re-run the prefix for every token). ``return_type``: "input" (text for a text input,
    else tokens), "str" (text; a list for several sequences) or "tokens" (``[batch, pos + new]``).
    ``verbose``: a tqdm progress bar.
    """
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int ≥ 0, got {max_new_tokens!r}")
    check_sampling(do_sample, temperature, top_k, top_p, freq_penalty)
    if return_type not in ("input", "str", "tokens"):
        raise ValueError(f"return_type must be 'input', 'str' or 'tokens', got {return_type!r}")
    if seed is not None and generator is not None:
        raise ValueError("pass seed or generator, not both")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an int, got {seed!r}")
    text_input = isinstance(input, str) or (isinstance(input, (list, tuple)) and bool(input)
                                            and all(isinstance(s, str) for s in input))
    if return_type == "str" or (return_type == "input" and text_input):
        model._need_tokenizer()
    tokens = _prompt_tokens(model, input, prepend_bos, padding_side)
    if model.cfg.positional == "learned" and tokens.shape[1] + max_new_tokens > model.cfg.n_ctx:
        raise ValueError(f"{tokens.shape[1]} prompt tokens + max_new_tokens={max_new_tokens} exceed the model's "
                         f"n_ctx = {model.cfg.n_ctx} (learned positions); shorten the prompt or generate fewer tokens")
    eos = _eos_ids(model, stop_at_eos, eos_token_id)
    if seed is not None:
        generator = torch.Generator(device=tokens.device).manual_seed(seed)

    cache = None
    if use_past_kv_cache:
        unsupported = step_unsupported(model)
        if unsupported:
            reasons = "; ".join(f"layer {i}: {why}" for i, why in unsupported.items())
            warnings.warn(f"generate re-runs the whole prefix for every token (O(pos) per token): {reasons}",
                          stacklevel=2)
        else:
            cache = model.init_cache()

    finished = torch.zeros(tokens.shape[0], dtype=torch.bool, device=tokens.device)
    stop_pad = torch.full_like(finished, eos[0] if eos else 0, dtype=torch.long)
    eos_t = torch.tensor(eos, dtype=torch.long, device=tokens.device)
    new = tokens
    for _ in tqdm(range(max_new_tokens), desc="generate", disable=not verbose):
        if cache is not None:
            logits = model(new, past_kv_cache=cache)[:, -1]
        else:
            logits = model(tokens)[:, -1]
        nxt = sample_logits(logits, do_sample=do_sample, temperature=temperature, top_k=top_k, top_p=top_p,
                            freq_penalty=freq_penalty, tokens=tokens, generator=generator)
        if eos:
            nxt = torch.where(finished, stop_pad, nxt)
            hit = torch.isin(nxt, eos_t) & ~finished
            stop_pad = torch.where(hit, nxt, stop_pad)
            finished |= hit
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        new = nxt[:, None]
        if eos and bool(finished.all()):
            break
    if return_type == "tokens" or (return_type == "input" and not text_input):
        return tokens
    texts = [model.to_string(row) for row in tokens]
    return texts[0] if isinstance(input, str) else texts
