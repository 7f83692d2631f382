"""The K-FAC editing page's computations: which linear layers to edit, what to recite, and one side-by-side
comparison of the unedited model, the K-FAC edit (Merullo et al. 2025) and the SVD baseline at one ρ.

Every edit returns a new model (:func:`~workbench.analysis.kfac.kfac_edit`, ``svd_edit``); the model
passed in is never changed. Thin wiring of :mod:`workbench.analysis.kfac` and
:mod:`workbench.analysis.memorization`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Optional, Sequence

import pandas as pd
import torch

from ..analysis.kfac import KINDS, KFACConfig, KFACFactors, collect_kfac, curvature_spectrum, kfac_edit, linear_sites
from ..analysis.kfac import check_rho, svd_edit  # check_rho: the app's pages check ρ through this module
from ..analysis.memorization import held_out_perplexity, recitation_table, summarize, topk_agreement
from ..model import lm_loss
from ..tasks import Canaries, task_from_dict
from .sequences import TokenSequence, check_sequence, parse_token_ids
from .token_streams import TokenStream, task_stream

KIND_LABELS = {"mlp_in": "MLP W_in", "mlp_gate": "MLP W_gate", "mlp_out": "MLP W_out", "q": "W_Q", "k": "W_K",
               "v": "W_V", "o": "W_O", "beta": "W_beta (β)"}
MODELS = ("unedited", "K-FAC", "SVD")
SUMMARY_COLUMNS = ["model", "perplexity", "top_k_agreement", "strict_acc", "loose_acc", "mean_norm_distance",
                   "kept_fraction", "weight_rel_change"]


# ---------------------------------------------------------------------- what to edit
def available_kinds(model) -> list[str]:
    """The kinds of linear layer (see :data:`~workbench.analysis.kfac.KINDS`) this model has."""
    have = list(dict.fromkeys(s.kind for s in linear_sites(model)))  # a new mixer may add kinds of its own
    return [k for k in KINDS if k in have] + [k for k in have if k not in KINDS]


def kind_choices(model) -> list[str]:
    """Every kind of linear layer the picker offers: the usual ones (a model without one says so when picked)
    and any a mixer of this model adds."""
    return list(dict.fromkeys([*KINDS, *available_kinds(model)]))


def site_names(model, layers: Sequence[int], kinds: Sequence[str]) -> tuple[str, ...]:
    """The parameter names of the ``kinds`` of linear layer in ``layers``; ValueError saying what to pick."""
    if not layers:
        raise ValueError("no layer chosen: pick at least one layer to edit")
    if not kinds:
        raise ValueError("no kind of linear layer chosen: pick at least one, e.g. MLP W_in and MLP W_out")
    sites = linear_sites(model, list(layers), list(kinds))
    if not sites:
        cfg = model.cfg
        raise ValueError(f"this model (mixers: {cfg.mixer_label}; mlp {cfg.mlp!r}) has no "
                         f"{[KIND_LABELS.get(k, k) for k in kinds]} in layer(s) {list(layers)}; its linear layers are "
                         f"{[KIND_LABELS.get(k, k) for k in available_kinds(model)]}")
    return tuple(s.param for s in sites)


def collect_factors(model, batches: Sequence[torch.Tensor], sites: Sequence[str], labels: str = "sampled",
                    seed: int = 0, progress: Optional[Callable[[int, int], None]] = None) -> dict[str, KFACFactors]:
    """K-FAC factors of ``sites`` over ``batches`` (``[batch, pos]`` each); ``progress(done, total)`` follows."""
    if not batches:
        raise ValueError("no batches to collect the curvature on: take at least one")

    def stream() -> Iterable[torch.Tensor]:
        for i, tokens in enumerate(batches):
            yield tokens
            if progress is not None:
                progress(i + 1, len(batches))

    return collect_kfac(model, stream(), KFACConfig(sites=tuple(sites), labels=labels, seed=seed), progress=False)


def spectra(factors: Mapping[str, KFACFactors]) -> dict[str, pd.DataFrame]:
    """``{parameter name: curvature_spectrum}`` of every collected layer."""
    return {name: curvature_spectrum(f) for name, f in factors.items()}


# ---------------------------------------------------------------------- what to recite
@dataclass(frozen=True)
class RecitationSet:
    """Sequences whose recitation is measured (all of one length), with how often each was in the
    training data when that is known (the canaries of a :class:`~workbench.tasks.Canaries` task)."""

    sequences: tuple[tuple[int, ...], ...]
    label: str
    repetitions: Optional[tuple[int, ...]] = None

    def tensor(self) -> torch.Tensor:
        return torch.tensor(self.sequences, dtype=torch.long)

    def meta(self) -> pd.DataFrame:
        """One row per sequence: ``repetitions`` (canaries) or ``sequence`` (its index)."""
        if self.repetitions is not None:
            return pd.DataFrame({"repetitions": list(self.repetitions)})
        return pd.DataFrame({"sequence": range(len(self.sequences))})

    @property
    def group(self) -> str:
        return "repetitions" if self.repetitions is not None else "sequence"

    @property
    def length(self) -> int:
        return len(self.sequences[0])


CANARY_TASKS = ("canaries", "text_canaries")


def is_canary_task(task: Optional[dict]) -> bool:
    return isinstance(task, dict) and task.get("name") in CANARY_TASKS


def canary_set(task: dict) -> RecitationSet:
    """The canaries of a ``canaries`` or ``text_canaries`` task, with their repetition counts in training
    (expected counts for ``canaries``, exact ones for ``text_canaries``)."""
    if not is_canary_task(task):
        raise ValueError(f"the task is {task.get('name') if isinstance(task, dict) else task!r}, not one of "
                         f"{list(CANARY_TASKS)}: it plants no canaries to recite; type sequences instead")
    obj = task_from_dict(task)
    return RecitationSet(tuple(map(tuple, obj.canaries().tolist())), f"the {obj.n_canaries} canaries of the task",
                         tuple(obj.canary_table().repetitions.tolist()))


def sequence_set(seq: TokenSequence) -> RecitationSet:
    return RecitationSet((tuple(seq.tokens),), f"the {seq.source}")


def typed_set(model, text: str) -> RecitationSet:
    """One sequence of token ids per line (blank lines skipped), cut to the shortest; ValueError naming
    the line that is wrong."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("no sequences to recite: type one sequence of token ids per line, e.g. 3 17 5 9 …")
    rows = []
    for i, line in enumerate(lines, 1):
        try:
            tokens = parse_token_ids(line)
            check_sequence(model, tokens)
        except ValueError as e:
            raise ValueError(f"line {i}: {e}") from None
        rows.append(tuple(tokens))
    n = min(map(len, rows))
    cut = " (cut to the shortest)" if any(len(r) > n for r in rows) else ""
    return RecitationSet(tuple(r[:n] for r in rows), f"{len(rows)} typed sequence{'s' if len(rows) > 1 else ''} of "
                                                     f"{n} tokens{cut}")


def check_windows(rset: RecitationSet, prefix_len: int, suffix_len: int) -> tuple[int, int]:
    """The prompt (prefix) and the scored continuation (suffix) lengths, if the sequences are long enough."""
    for name, v in (("the prefix length", prefix_len), ("the suffix length", suffix_len)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if prefix_len + suffix_len > rset.length:
        raise ValueError(f"prefix + suffix = {prefix_len + suffix_len} tokens, but the sequences to recite have "
                         f"{rset.length}: shorten the prefix or the suffix, or recite longer sequences")
    return prefix_len, suffix_len


def default_windows(length: int) -> tuple[int, int]:
    """8-token prompt and 16-token continuation (Merullo et al. use 64 + 48), shrunk to fit ``length``."""
    if length < 2:
        return 1, 1
    prefix = min(8, max(1, length // 3))
    return prefix, min(16, length - prefix)


def held_out_stream(cfg, task: dict, n_batches: int, batch_size: int, seed: int) -> TokenStream:
    """Text without canaries for perplexity: a ``canaries`` task's background rows (its learnable chain), the
    validation documents of a ``text_canaries`` task (the first ``n_batches`` batches; ``seed`` unused), else
    fresh samples of the task (draw them with a seed the K-FAC batches do not use)."""
    stream = task_stream(cfg, task, n_batches, batch_size, seed)  # checks the sizes and that the model fits
    obj = task_from_dict(task)
    if isinstance(obj, Canaries):
        g = torch.Generator().manual_seed(seed)
        rows = [obj.background(batch_size, g) for _ in range(n_batches)]
        label = f"{n_batches} × {batch_size} background rows of the canaries task (no canaries, seed {seed})"
    elif hasattr(obj, "validation"):
        rows = obj.validation(batch_size)[:n_batches]
        label = f"{sum(len(r) for r in rows)} rows of the task's validation text (no canaries)"
    else:
        return stream
    return TokenStream(tuple(tuple(map(tuple, r.tolist())) for r in rows), label)


@torch.no_grad()
def perplexity(model, stream: TokenStream) -> float:
    """exp(mean next-token NLL) over the predictions the stream's task scores (all of them: exactly
    :func:`~workbench.analysis.memorization.held_out_perplexity`). MQAR scores only its queries: the other
    tokens are random, and a model trained on the queries alone predicts them no better than chance."""
    if stream.scored is None:
        return held_out_perplexity(model, stream.tensors())
    total, n = 0.0, 0
    for tokens, mask in zip(stream.tensors(), stream.masks()):
        nll = lm_loss(model(tokens), tokens, reduction="none")  # [batch, pos-1]
        total += float(nll[mask].double().sum())
        n += int(mask.sum())
    if n == 0:
        raise ValueError("the held-out batches score no prediction: take more or longer batches")
    return math.exp(total / n)


@torch.no_grad()
def unedited_recitation(model, recite: "RecitationSet", prefix_len: int, suffix_len: int) -> dict:
    """How well the unedited model recites ``recite`` (``strict_acc``, ``loose_acc``, ``mean_norm_distance``):
    measured before any edit, so a page can say that there is nothing memorized to remove."""
    prefix_len, suffix_len = check_windows(recite, prefix_len, suffix_len)
    overall = summarize(recitation_table(model, recite.tensor(), [prefix_len], suffix_len, meta=recite.meta())).iloc[0]
    return {k: float(overall[k]) for k in ("strict_acc", "loose_acc", "mean_norm_distance")}


# ---------------------------------------------------------------------- the comparison
@dataclass(frozen=True)
class EditComparison:
    """``summary``: one row per model (:data:`MODELS`) with perplexity, top-k agreement with the unedited
    model, recitation accuracy, and the share of components kept / relative weight change over the edited
    layers; ``by_group``: recitation per repetition count (or per sequence) and model; ``recitation``: one
    row per sequence and model; ``report``: one row per edited layer and method."""

    summary: pd.DataFrame
    by_group: pd.DataFrame
    recitation: pd.DataFrame
    report: pd.DataFrame
    rho: float
    k: int


def compare_edits(model, factors: Mapping[str, KFACFactors], rho: float, recite: RecitationSet,
                  held_out: TokenStream, prefix_len: int, suffix_len: int, svd_budget: str = "energy",
                  progress: Optional[Callable[[int, int, str], None]] = None):
    """Edit ``model`` with K-FAC and with SVD truncation at ``rho`` (the layers of ``factors``) and measure all
    three: recitation of ``recite``, :func:`perplexity` and top-k agreement on ``held_out``. Returns
    ``(EditComparison, {"K-FAC": new model, "SVD": new model})``; ``model`` is unchanged.
    ``progress(done, total, what)`` is called after each step."""
    rho = check_rho(rho)
    prefix_len, suffix_len = check_windows(recite, prefix_len, suffix_len)
    if not factors:
        raise ValueError("no K-FAC factors: collect them on at least one layer first")
    steps = iter(range(1, 6))

    def done(what: str) -> None:
        if progress is not None:
            progress(next(steps), 5, what)

    kfac_model, kfac_report = kfac_edit(model, factors, rho)
    done("K-FAC edit")
    svd_model, svd_report = svd_edit(model, list(factors), rho, budget=svd_budget)
    done("SVD edit")
    k = min(10, model.cfg.d_vocab)
    models = dict(zip(MODELS, (model, kfac_model, svd_model)))
    reports = {"unedited": None, "K-FAC": kfac_report, "SVD": svd_report}
    rows, tables = [], []
    for name, m in models.items():
        table = recitation_table(m, recite.tensor(), [prefix_len], suffix_len, meta=recite.meta())
        tables.append(table.assign(model=name))
        overall = summarize(table).iloc[0]
        report = reports[name]
        rows.append({"model": name, "perplexity": perplexity(m, held_out),
                     "top_k_agreement": 1.0 if m is model else topk_agreement(model, m, held_out.tensors(), k),
                     "strict_acc": float(overall.strict_acc), "loose_acc": float(overall.loose_acc),
                     "mean_norm_distance": float(overall.mean_norm_distance),
                     "kept_fraction": 1.0 if report is None else float(report.kept_fraction.mean()),
                     "weight_rel_change": 0.0 if report is None else float(report.weight_rel_change.mean())})
        done(f"the {name} model measured")
    recitation = pd.concat(tables, ignore_index=True)
    by_group = pd.concat([summarize(t, [recite.group]).assign(model=name) for name, t in
                          zip(MODELS, tables)], ignore_index=True)
    comparison = EditComparison(pd.DataFrame(rows)[SUMMARY_COLUMNS], by_group, recitation,
                                pd.concat([kfac_report, svd_report], ignore_index=True), rho, k)
    return comparison, {"K-FAC": kfac_model, "SVD": svd_model}
