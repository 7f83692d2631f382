"""One run: train a text model on the study's corpus, then the three questions on it. Returns plain JSON data."""

from __future__ import annotations

import dataclasses
import math
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import torch

from workbench import train
from workbench.analysis.lenses import LensTrainConfig, lens_table, residual_stream, train_tuned_lens
from workbench.analysis.steering import (combined_steering, matched_state_strength, residual_activations,
                                         residual_steering, state_steering, state_steering_change, steering_sweep)
from workbench.mixers import NotDefinedForMixer
from workbench.tasks import TextLM
from workbench.text import validation_windows
from workbench.text.corpus import load_corpus, split_documents
from workbench.text.evaluate import evaluate_text

from .._report import records
from .corpus import BAD, GOOD, MAX_TERM, NOUNS, OFFSETS, PERSONAS, draw_item, is_synthetic, mood_prompt, write_corpus
from .config import Protocol, RunConfig
from .finetune import encode, finetune_quirky
from .probe import auroc, fit_logistic, probe_scores

ONEHOT = MAX_TERM + max(OFFSETS) + 1  # the values a and c can take: 0 … ONEHOT − 1
LENS_STATS = ("logit_ppl", "tuned_ppl", "gain_ce", "logit_kl", "tuned_kl")


def task_of(protocol: Protocol, corpus_root: Path) -> TextLM:
    corpus = write_corpus(corpus_root, protocol.synthetic_docs, protocol.lines_per_doc, protocol.corpus_seed)
    return TextLM(corpus=corpus, tokenizer="bpe", vocab_size=protocol.vocab_size, seq_len=protocol.seq_len)


def real_text_windows(task: TextLM) -> torch.Tensor:
    """Full-length windows ``[batch, pos]`` of the validation documents of python-topics only (no synthetic line)."""
    _, val = split_documents(load_corpus(task.corpus), task.val_fraction)
    text = "\n\n".join(d.text for d in val if not is_synthetic(d.title))
    ids = torch.tensor(task.data.tokenizer.encode(text), dtype=torch.long)
    windows = [w for w in validation_windows(ids, task.seq_len) if len(w) == task.seq_len]
    if not windows:
        raise ValueError("the python-topics validation text is shorter than one window")
    return torch.stack(windows)


# ---- question 1: lenses -------------------------------------------------------------------------------------
def lenses(model, task: TextLM, protocol: Protocol, seed: int, progress: bool) -> list[dict]:
    """Logit and tuned lens by layer on real validation text: per layer the mean over ``lens_groups`` groups of
    windows and its standard error; the CE gain of the tuned lens is paired (same windows)."""
    g = torch.Generator().manual_seed(seed)
    batches = [task.sample(protocol.lens_batch, g).tokens for _ in range(protocol.lens_steps)]
    lens, history = train_tuned_lens(model, batches, LensTrainConfig(steps=protocol.lens_steps, seed=seed),
                                     progress=progress)
    windows = real_text_windows(task)
    per = len(windows) // protocol.lens_groups
    if per < 1:
        raise ValueError(f"only {len(windows)} validation windows for {protocol.lens_groups} groups")
    parts = pd.concat([lens_table(model, windows[i * per:(i + 1) * per], lens).assign(group=i)
                       for i in range(protocol.lens_groups)])
    parts["gain_ce"] = parts["logit_ce"] - parts["tuned_ce"]
    mean = parts.groupby("layer")[list(LENS_STATS)].mean()
    se = parts.groupby("layer")[list(LENS_STATS)].std(ddof=1) / math.sqrt(protocol.lens_groups)
    rows = []
    for layer in mean.index:
        rows.append({"layer": int(layer), **{s: float(mean.loc[layer, s]) for s in LENS_STATS},
                     **{f"{s}_se": float(se.loc[layer, s]) for s in LENS_STATS},
                     "val_tokens": protocol.lens_groups * per * (task.seq_len - 1),
                     "final_lens_loss": float(history["loss"].iloc[-20:].mean())})
    return rows


# ---- question 2: steering -----------------------------------------------------------------------------------
def word_ids(task: TextLM, words) -> list[int]:
    """The first token of `` word`` for each word (the token the model must put first)."""
    return sorted({task.data.tokenizer.encode(" " + w)[0] for w in words})


def mood_prompts(task: TextLM, marker: str, n: int, rng: random.Random, nouns) -> torch.Tensor:
    return torch.tensor([encode(task, mood_prompt(marker, rng.choice(nouns))) for _ in range(n)])


def usable_nouns(task: TextLM) -> list[str]:
    """The nouns whose prompts have the most common token length for all three markers (so prompts stack)."""
    length = {n: {len(encode(task, mood_prompt(m, n))) for m in ("good", "bad", "some")} for n in NOUNS}
    mode = Counter(len_ for s in length.values() for len_ in s).most_common(1)[0][0]
    return [n for n, s in length.items() if s == {mode}]


def steering(model, task: TextLM, protocol: Protocol, seed: int, progress: bool) -> dict[str, Any]:
    good, bad = word_ids(task, GOOD), word_ids(task, BAD)
    shared = set(good) & set(bad)  # a first token both lists start with says nothing about the mood: dropped
    good, bad = [i for i in good if i not in shared], [i for i in bad if i not in shared]
    if not good or not bad:
        raise ValueError("the GOOD and BAD words have no first tokens of their own under this tokenizer")
    nouns = usable_nouns(task)
    rng = random.Random(10_000 + seed)
    pos, neg = (mood_prompts(task, m, protocol.n_prompts, rng, nouns) for m in ("good", "bad"))
    test = mood_prompts(task, "some", protocol.n_prompts, rng, nouns)
    layer, n_pos = protocol.steer_layer, test.shape[1]
    # held-out text in pieces as long as the prompts, so every condition steers every held-out position too
    windows = real_text_windows(task)[: protocol.n_prompts // 4 or 1]
    heldout = windows[:, : windows.shape[1] // n_pos * n_pos].reshape(-1, n_pos)

    def mood_score(logits: torch.Tensor) -> torch.Tensor:  # [batch]: log p(GOOD words) − log p(BAD words)
        lp = logits[:, -1].log_softmax(-1)
        return lp[:, good].logsumexp(-1) - lp[:, bad].logsumexp(-1)

    with torch.no_grad():
        clean = {m: mood_score(model(t)) for m, t in (("good", pos), ("bad", neg), ("some", test))}
        mass = float(model(test)[:, -1].softmax(-1)[:, good + bad].sum(-1).mean())
    vector = residual_activations(model, pos, layer).mean(0) - residual_activations(model, neg, layer).mean(0)
    steerers = {"residual": lambda s: residual_steering(model, layer, vector, s)}
    state_note, matched_note, matching = None, None, {}
    everywhere = list(range(n_pos))
    try:
        with torch.no_grad():
            direction = (model.fast_weights(pos, layer, [n_pos - 1])[:, 0].mean(0)
                         - model.fast_weights(neg, layer, [n_pos - 1])[:, 0].mean(0))
        steerers["state"] = lambda s: state_steering(model, layer, everywhere, direction=direction, strength=s,
                                                      mode="readout")
        steerers["residual + state"] = lambda s: combined_steering(model, layer, vector, direction, s, everywhere,
                                                                    mode="readout")
        matching["state_unit_change"] = unit = float(state_steering_change(model, test, layer, direction, 1.0,
                                                                           everywhere).mean())
        # the other way round (always defined): the CAA vector scaled to the state's own mean change at strength 1
        shrunk = vector * (unit / float(vector.norm()))
        steerers["residual (matched to state)"] = lambda s: residual_steering(model, layer, shrunk, s)
        steerers["residual (matched to state) + state"] = lambda s: combined_steering(
            model, layer, shrunk, direction, s, everywhere, mode="readout")
        try:
            scale = matched_state_strength(model, test, layer, direction, float(vector.norm()), everywhere)
        except ValueError as e:  # the change saturates below the residual vector's norm
            matched_note = str(e)
        else:
            matching["matched_scale"] = scale
            for m in (-1.0, 1.0):  # the change at ±scale, measured again (matched at +1 by construction)
                matching[f"matched_change_at_{m:g}"] = float(state_steering_change(model, test, layer, direction,
                                                                                   m * scale, everywhere).mean())
            steerers["state (norm-matched)"] = lambda s: state_steering(model, layer, everywhere, direction=direction,
                                                                         strength=s * scale, mode="readout")
            steerers["residual + state (norm-matched)"] = lambda s: combined_steering(
                model, layer, vector, direction, s, everywhere, state_scale=scale, mode="readout")
    except NotDefinedForMixer as e:
        state_note = str(e)
    table = steering_sweep(model, test, steerers, protocol.strengths, metric=mood_score, heldout=heldout,
                           progress=progress)
    return {"sweep": records(table), "state_not_defined": state_note, "matched_not_reached": matched_note,
            **matching, "good_ids": good, "bad_ids": bad,
            "shared_ids_dropped": sorted(shared),
            "nouns": nouns, "adjective_mass": mass, "vector_norm": float(vector.norm()),
            "marker_accuracy": float(((clean["good"] > 0).double().mean() + (clean["bad"] < 0).double().mean()) / 2),
            "clean": {m: float(v.mean()) for m, v in clean.items()}}


# ---- question 3: the quirky probe ---------------------------------------------------------------------------
def quirky_features(model, task: TextLM, items) -> tuple[torch.Tensor, torch.Tensor]:
    """(residual at the last prompt token of every layer ``[layer, item, d_model]``, p(yes) − p(no) ``[item]``)."""
    yes, no = (task.data.tokenizer.encode(" " + w)[0] for w in ("yes", "no"))
    feats, margin = [None] * len(items), [None] * len(items)
    groups: dict[int, list[int]] = {}
    toks = [encode(task, it.prompt()) for it in items]
    for i, t in enumerate(toks):
        groups.setdefault(len(t), []).append(i)
    with torch.no_grad():
        for idx in groups.values():
            batch = torch.tensor([toks[i] for i in idx])
            stream = residual_stream(model, batch)[:, :, -1]  # [layer, batch, d_model]
            lp = model(batch)[:, -1].log_softmax(-1)
            for j, i in enumerate(idx):
                feats[i], margin[i] = stream[:, j], lp[j, yes] - lp[j, no]
    return torch.stack(feats, 1), torch.stack(margin)


def quirky(model, task: TextLM, protocol: Protocol, seed: int) -> dict[str, Any]:
    rng = random.Random(20_000 + seed)
    train_items = [draw_item(rng, "alice") for _ in range(protocol.probe_items)]
    test = {p: [draw_item(rng, p) for _ in range(protocol.probe_items)] for p in PERSONAS}
    x_train, _ = quirky_features(model, task, train_items)
    y_train = torch.tensor([it.truth for it in train_items])
    behaviour, layers = {}, []
    feats = {p: quirky_features(model, task, items) for p, items in test.items()}
    for p, items in test.items():
        said_yes = feats[p][1] > 0
        answer = torch.tensor([it.answer for it in items])
        dis = torch.tensor([it.disagree for it in items])
        behaviour[p] = {"accuracy_vs_persona": float((said_yes == answer).double().mean()),
                        "accuracy_vs_persona_disagree": float((said_yes[dis] == answer[dis]).double().mean()),
                        "n": len(items), "n_disagree": int(dis.sum())}
    for layer in range(x_train.shape[0]):
        probe = fit_logistic(x_train[layer], y_train)
        row = {"layer": layer}
        for p, items in test.items():
            s = probe_scores(probe, feats[p][0][layer])
            truth = torch.tensor([it.truth for it in items])
            dis = torch.tensor([it.disagree for it in items])
            row[f"auroc_truth_{p}"] = auroc(s, truth)
            row[f"auroc_truth_{p}_disagree"] = auroc(s[dis], truth[dis])
        layers.append(row)
    return {"behaviour": behaviour, "probe": layers}


def input_baseline(protocol: Protocol, seed: int) -> dict[str, float]:
    """The same probe on the inputs alone — one-hot a and c, no model — fitted and read as in :func:`quirky`
    (same items): how much of the truth a linear read-out of the two numbers already gives."""
    rng = random.Random(20_000 + seed)
    train_items = [draw_item(rng, "alice") for _ in range(protocol.probe_items)]
    bob = [draw_item(rng, p) for p in PERSONAS for _ in range(protocol.probe_items)][protocol.probe_items:]

    def onehot(items) -> torch.Tensor:
        x = torch.zeros(len(items), 2 * ONEHOT)  # a, then c
        for i, it in enumerate(items):
            x[i, it.a], x[i, ONEHOT + it.c] = 1.0, 1.0
        return x

    probe = fit_logistic(onehot(train_items), torch.tensor([it.truth for it in train_items]))
    s, truth = probe_scores(probe, onehot(bob)), torch.tensor([it.truth for it in bob])
    dis = torch.tensor([it.disagree for it in bob])
    return {"auroc_truth_bob": auroc(s, truth), "auroc_truth_bob_disagree": auroc(s[dis], truth[dis])}


def execute(run: RunConfig, protocol: Protocol, corpus_root: Path, progress: bool = True) -> dict[str, Any]:
    """Train run's model and answer the three questions on it; the entry of results.json (with wall times)."""
    task = task_of(protocol, corpus_root)
    start = time.perf_counter()
    cfg = dataclasses.replace(protocol.train, seed=run.seed)
    model = train(run.model_config(protocol, task.d_vocab), task, cfg, progress=progress).model.eval()
    timings = {"train_s": round(time.perf_counter() - start, 1)}
    val = evaluate_text(model, task)
    t = time.perf_counter()
    lens_rows = lenses(model, task, protocol, run.seed, progress)
    timings["lens_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    steer = steering(model, task, protocol, run.seed, progress)
    timings["steering_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    quirky_model, history = finetune_quirky(model, task, protocol.quirk_train, run.seed, progress)
    timings["quirk_train_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    probe = quirky(quirky_model, task, protocol, run.seed)
    probe["behaviour_before_finetune"] = quirky(model, task, protocol, run.seed)["behaviour"]
    probe["finetune_text_eval_loss"] = [h["eval_loss"] for h in history if "eval_loss" in h]
    timings["probe_s"] = round(time.perf_counter() - t, 1)
    return {"run": run.name, "mixer": run.mixer, "seed": run.seed, "val_loss": val["val_loss"],
            "val_ppl": val["val_ppl"], "lens": lens_rows, "steering": steer, "quirky": probe, "seconds": timings}
