"""The study's work: collect writes, train the dictionaries, run the substitution test and the sweep, measure
the SAE on a hook. Returns plain JSON data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Optional

import pandas as pd
import torch

from workbench import checkpoint
from workbench.analysis.dictionaries import (atom_usage, cache_activations, collect_writes, reconstruction_metrics,
                                             save_dictionary, spliced_loss, substitution_test, train_sae,
                                             train_write_sae, win_rate, write_reconstruction_metrics)
from workbench.paths import CHECKPOINTS_DIR
from workbench.tasks import task_from_dict

from .. import _cli
from .config import Study


def load(study: Study):
    """(model, task) of the bundled checkpoint; ValueError naming the bundled ones if it is not there."""
    directory = CHECKPOINTS_DIR / study.checkpoint
    if not (directory / "recipe.json").is_file():
        known = sorted(p.name for p in CHECKPOINTS_DIR.iterdir() if (p / "recipe.json").is_file())
        raise ValueError(f"no bundled checkpoint {study.checkpoint!r}; bundled: {known}")
    recipe = json.loads((directory / "recipe.json").read_text())
    return checkpoint.load(directory), task_from_dict(recipe["task"])


def batches(task, n: int, size: int, seed: int) -> list:
    gen = torch.Generator().manual_seed(seed)
    return [task.sample(size, gen) for _ in range(n)]


def head_entry(model, study: Study, head: int, train: list, evaluation: list, out: Optional[Path],
               progress: bool) -> tuple[dict, pd.DataFrame]:
    keys, values = collect_writes(model, [b.tokens for b in train], study.layer, head)
    sae, history = train_write_sae(keys, values, study.write_sae, progress=progress)
    if out is not None:
        save_dictionary(sae, out / f"write_sae_L{study.layer}H{head}.safetensors")
    ev_keys, ev_values = collect_writes(model, [b.tokens for b in evaluation], study.layer, head)
    tests = []
    for i, b in enumerate(evaluation):
        part = substitution_test(model, sae, b.tokens, study.layer, head, loss_mask=b.loss_mask,
                                 n_firings=study.n_firings, seed=study.data_seed + i, progress=progress)
        tests.append(part.assign(batch=i))
    firings = pd.concat(tests, ignore_index=True).assign(head=head)
    entry = {"head": head, "n_train_writes": len(keys), "train_history": history.to_dict("list"),
             "reconstruction": write_reconstruction_metrics(sae, ev_keys, ev_values),
             "usage": atom_usage(sae, ev_keys, ev_values).frequency.tolist(),
             "win_rates": [win_rate(firings, b, m) for b in ("ablate", "random") for m in ("loss", "kl")],
             "medians": firings[[c for c in firings if c.startswith(("loss_", "kl_"))]].median().to_dict()}
    return entry, firings


def sweep(model, study: Study, train: list, evaluation: list, progress: bool) -> list[dict]:
    head = study.heads[0]
    keys, values = collect_writes(model, [b.tokens for b in train], study.layer, head)
    ev_keys, ev_values = collect_writes(model, [b.tokens for b in evaluation], study.layer, head)
    acts = cache_activations(model, [b.tokens for b in train], study.sae_hook)
    ev_acts = cache_activations(model, [b.tokens for b in evaluation], study.sae_hook)
    rows = []
    for k in study.sweep_k:
        w, _ = train_write_sae(keys, values, dataclasses.replace(study.write_sae, k=k), progress=progress)
        b = evaluation[0]
        firings = substitution_test(model, w, b.tokens, study.layer, head, loss_mask=b.loss_mask,
                                    n_firings=study.n_firings, seed=study.data_seed, progress=progress)
        wins = {f"win_{m}_vs_{c}": win_rate(firings, c, m)["fraction"] for c in ("ablate", "random") for m in ("loss", "kl")}
        rows.append({"dictionary": f"WriteSAE L{study.layer}H{head} writes", "k": k,
                     **write_reconstruction_metrics(w, ev_keys, ev_values), **wins, "n_firings": len(firings)})
        s, _ = train_sae(acts, dataclasses.replace(study.sae, k=k), progress=progress)
        rows.append({"dictionary": f"SAE {study.sae_hook}", "k": k, **reconstruction_metrics(s, ev_acts)})
    return rows


def sae_entry(model, study: Study, train: list, evaluation: list, out: Optional[Path], progress: bool) -> dict:
    acts = cache_activations(model, [b.tokens for b in train], study.sae_hook)
    sae, history = train_sae(acts, study.sae, progress=progress)
    if out is not None:
        save_dictionary(sae, out / "sae.safetensors")
    ev = cache_activations(model, [b.tokens for b in evaluation], study.sae_hook)
    losses = [spliced_loss(model, sae, b.tokens, study.sae_hook, loss_mask=b.loss_mask) for b in evaluation]
    return {"hook": study.sae_hook, "n_train": len(acts), "reconstruction": reconstruction_metrics(sae, ev),
            "loss": {key: sum(d[key] for d in losses) / len(losses) for key in losses[0]},
            "train_history": history.to_dict("list")}


@dataclasses.dataclass(frozen=True)
class Part:
    """One resumable piece of the study: a studied head (``head``), the sparsity sweep or the SAE.
    :func:`case_studies._cli.run_each` saves each finished piece, so a killed run continues where it stopped."""

    name: str
    head: Optional[int] = None


def _summary(part: Part, entry: dict) -> str:
    if part.head is not None:
        ev = entry["reconstruction"].get("explained_variance")
        return f"{part.name}: {len(entry['firings']['atom'])} firings" + (f", explained variance {ev:.3f}" if ev else "")
    return f"{part.name}: done"


def execute(study: Study, out: Optional[Path] = None, progress: bool = True) -> dict:
    model, task = load(study)
    train = batches(task, study.train_batches, study.batch_size, study.data_seed)
    evaluation = batches(task, study.eval_batches, study.batch_size, study.data_seed + 1)

    def run(part: Part) -> dict:
        if part.head is not None:
            entry, firings = head_entry(model, study, part.head, train, evaluation, out, progress)
            return {**entry, "firings": firings.to_dict("list")}
        if part.name == "sweep":
            return {"rows": sweep(model, study, train, evaluation, progress)}
        return sae_entry(model, study, train, evaluation, out, progress)

    parts = [Part(f"head{h}", h) for h in study.heads] + [Part("sweep"), Part("sae")]
    entries = _cli.run_each(parts, run, _summary, progress=progress, out=out, context=study.to_dict())
    heads = [{k: v for k, v in e.items() if k != "firings"} for e in entries[: len(study.heads)]]
    all_firings = pd.concat([pd.DataFrame(e["firings"]) for e in entries[: len(study.heads)]], ignore_index=True)
    return {"heads": heads,
            "pooled_win_rates": [win_rate(all_firings, b, m) for b in ("ablate", "random") for m in ("loss", "kl")],
            "sweep": entries[-2]["rows"],
            "sae": entries[-1],
            "firings": all_firings.to_dict("list")}
