"""The outlier case study as data: one :class:`Protocol` shared by every run and a list of :class:`RunConfig`.

A run is one small language model on the Python documentation (``workbench.text``), named
``<mixer>-<block>-<optimizer>``: trained with checkpoints every ``save_every`` steps, traced at each
checkpoint (kurtosis over training) and quantised to W8A8 at the end. Frozen and JSON round-trippable;
``FULL`` and ``QUICK`` are what ``python -m case_studies.outliers [--quick]`` runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from workbench import ModelConfig
from workbench.mixers import names
from workbench.dataclass_io import JsonConfig, check_int_fields
from workbench.tasks.text import TextLM
from workbench.training import OPTIMIZERS, TrainConfig

from .._study import ProtocolBase, StudyBase

BLOCKS = ("pre_norm", "outlier_protected")
BLOCK_SHORT = {"pre_norm": "prenorm", "outlier_protected": "op"}


TRAIN = TrainConfig(steps=700, batch_size=16, lr=3e-3, warmup_steps=50, save_every=100, eval_every=100, seed=0)


@dataclass(frozen=True)
class Protocol(ProtocolBase):
    """Model size, data and training shared by every run, and how the runs are measured.

    Model: ``n_layers`` blocks, ``d_model``, ``n_heads`` × ``d_head``, GELU MLP of ``d_mlp``, learned
    positions, LayerNorm (pre-norm: before each branch; Outlier Protected: on the first block's input,
    residual branches × ``branch_scale``, QK-norm). Data: ``corpus`` (:mod:`workbench.text.corpus`), byte-level BPE of
    ``vocab_size``, ``seq_len`` tokens × ``train.batch_size`` per step. Training: ``train`` (linear
    warmup then cosine to lr/10, clip 1, weight decay 0.1 on matrices, checkpoints every
    ``train.save_every`` steps; the optimizer is the run's); ``train.seed`` is the study's seed. Measurement: kurtosis etc. on the first ``trace_windows`` validation windows
    at every checkpoint; validation perplexity (all held-out documents) of the float model and of its
    W8A8 copy (activations per tensor and per token)."""

    vocab_size: int = 1024
    seq_len: int = 128
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_head: int = 16
    d_mlp: int = 256
    branch_scale: float = 0.2
    train: TrainConfig = TRAIN
    trace_windows: int = 32
    corpus: str = "python-topics"

    FLAT_TRAIN_KEYS: ClassVar[tuple[str, ...]] = ("steps", "batch_size", "lr", "warmup_steps", "save_every", "seed")

    @classmethod
    def train_from_flat(cls, flat: dict[str, Any]) -> TrainConfig:
        """Checkpoints were evaluated at every save: ``eval_every = save_every``."""
        return dataclasses.replace(TRAIN, **flat, eval_every=flat.get("save_every", TRAIN.save_every))

    def __post_init__(self) -> None:
        self._check_train()
        check_int_fields(self, ("vocab_size", "seq_len", "d_model", "n_layers", "n_heads", "d_head", "d_mlp",
                                "trace_windows"))
        t = self.train
        if not 0 < t.save_every <= t.steps:
            raise ValueError(f"Protocol.train.save_every ({t.save_every}) must be in 1..steps ({t.steps}): the "
                             "checkpoints are what is traced")

    def task(self) -> TextLM:
        return TextLM(corpus=self.corpus, tokenizer="bpe", vocab_size=self.vocab_size, seq_len=self.seq_len)


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """One model: ``mixer`` in ``block`` style, trained with ``optimizer``."""

    mixer: str
    block: str
    optimizer: str

    def __post_init__(self) -> None:
        for name, allowed in (("mixer", tuple(names())), ("block", BLOCKS), ("optimizer", OPTIMIZERS)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"RunConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def name(self) -> str:
        return f"{self.mixer.replace('_', '-')}-{BLOCK_SHORT[self.block]}-{self.optimizer}"

    def model_config(self, protocol: Protocol, d_vocab: int) -> ModelConfig:
        p = protocol
        return ModelConfig(d_vocab=d_vocab, d_model=p.d_model, n_layers=p.n_layers, n_heads=p.n_heads,
                           d_head=p.d_head, d_mlp=p.d_mlp, n_ctx=p.seq_len, mixer=self.mixer, block=self.block,
                           branch_scale=p.branch_scale, seed=p.seed)

    def train_config(self, protocol: Protocol) -> TrainConfig:
        return dataclasses.replace(protocol.train, optimizer=self.optimizer)


@dataclass(frozen=True)
class Study(StudyBase):
    PROTOCOL: ClassVar[type] = Protocol
    RUN: ClassVar[type] = RunConfig
    protocol: Protocol
    runs: tuple[RunConfig, ...]


def grid(mixers, blocks=BLOCKS, optimizers=OPTIMIZERS) -> tuple[RunConfig, ...]:
    return tuple(RunConfig(m, b, o) for m in mixers for b in blocks for o in optimizers)


FULL = Study(Protocol(), grid(("softmax", "delta")))
QUICK = Study(Protocol(vocab_size=320, seq_len=32, d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32,
                       train=dataclasses.replace(TRAIN, steps=12, batch_size=4, warmup_steps=2, save_every=6,
                                                 eval_every=6),
                       trace_windows=4),
              grid(("softmax", "delta")))


# ---- Part "search" (issue 18): a positive control, a configuration in which pre-norm + AdamW *does* develop
# outlier features. Declared before any of these runs was made (README, "Positive control"): softmax,
# pre-norm, AdamW, weight decay 0 (He et al.'s drivers: a large learning rate, no weight decay, width and
# depth, longer training), seed 0; candidates in order of cost, run in that order, the search stopping at
# the first that meets SEARCH_RULE.
SEARCH_ARM = RunConfig("softmax", "pre_norm", "adamw")
SEARCH_KURTOSIS = 10.0  # final kurtosis (largest over layers) of the residual stream or of any matmul input, ≥
SEARCH_W8A8_RATIO = 1.10  # W8A8 per-tensor validation perplexity / float, ≥


@dataclass(frozen=True)
class Candidate(JsonConfig):
    """One configuration of the search: ``d_model`` (4 heads of d_model/4, MLP 4·d_model), ``n_layers``, the
    peak ``lr``, ``weight_decay`` and ``steps`` (checkpoints every steps/10); ``seq_len`` and ``batch_size``
    (tokens per window and windows per step) when set; the rest is the base protocol's."""

    d_model: int
    n_layers: int
    lr: float
    steps: int
    weight_decay: float = 0.0
    seq_len: Optional[int] = None
    batch_size: Optional[int] = None

    def __post_init__(self) -> None:
        check_int_fields(self, ("d_model", "n_layers", "steps"))
        check_int_fields(self, tuple(f for f in ("seq_len", "batch_size") if getattr(self, f) is not None))
        if self.d_model % 4 or self.steps % 10:
            raise ValueError(f"Candidate.d_model ({self.d_model}) must split into 4 heads and steps ({self.steps}) "
                             "into 10 checkpoints")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"Candidate.lr must be > 0 and weight_decay ≥ 0, got {self.lr}, {self.weight_decay}")

    @property
    def name(self) -> str:
        shape = "" if self.seq_len is None and self.batch_size is None else \
            f"-T{self.seq_len or 'base'}x{self.batch_size or 'base'}"
        return f"d{self.d_model}-L{self.n_layers}-lr{self.lr:g}-wd{self.weight_decay:g}-{self.steps}steps{shape}"

    def protocol(self, base: Protocol) -> Protocol:
        train = dataclasses.replace(base.train, lr=self.lr, weight_decay=self.weight_decay, steps=self.steps,
                                    save_every=self.steps // 10, eval_every=self.steps // 10,
                                    batch_size=self.batch_size or base.train.batch_size)
        return dataclasses.replace(base, d_model=self.d_model, n_layers=self.n_layers, n_heads=4,
                                   d_head=self.d_model // 4, d_mlp=4 * self.d_model, train=train,
                                   seq_len=self.seq_len or base.seq_len)


@dataclass(frozen=True)
class SearchStudy(StudyBase):
    PROTOCOL: ClassVar[type] = Protocol
    RUN: ClassVar[type] = Candidate
    protocol: Protocol
    runs: tuple[Candidate, ...]


SEARCH = SearchStudy(Protocol(), (  # ≈ 0.15 s/step at d64 L2, 0.42 at d128 L4 (AdamW, 1 thread, measured first)
    Candidate(64, 2, 1e-2, 1000), Candidate(64, 2, 3e-2, 1000),
    Candidate(128, 4, 1e-2, 1000), Candidate(128, 4, 3e-2, 1000),
    Candidate(128, 4, 1e-2, 2000), Candidate(128, 4, 3e-2, 2000)))
SEARCH_QUICK = SearchStudy(QUICK.protocol, (Candidate(16, 1, 1e-2, 10), Candidate(16, 2, 3e-2, 10)))

# ---- Part "search2": a second declared search, written after the first found no positive control and before
# any of its runs. The rule (SEARCH_KURTOSIS, SEARCH_W8A8_RATIO), the arm (SEARCH_ARM), seed 0, the order of
# cost and the stop at the first candidate meeting the rule are the first search's. Each candidate changes one
# lever from the first search's best-trained model (128 × 4, lr 1e-2, wd 0, 2000 steps of 128 tokens × 16):
#   1. context 512 tokens × 4 windows per step (the same tokens per step): attention sinks and "no-op" heads,
#      which put massive activations on a few tokens (Bondarenko et al. 2023; Xiao et al. 2024; Sun et al. 2024),
#      have more to skip in a longer context, and a per-tensor scale sees 4 times more tokens per window;
#   2. the same with weight decay 0.1 (the main study's; Gu et al. 2025 report that weight decay makes sinks
#      form, He et al. that its absence feeds outliers: both directions are tried);
#   3. 6000 steps instead of 2000 (longer training; He et al.'s kurtosis grows over tens of thousands of steps);
#   4. width 256 at lr 5e-3 (more width, the lr halved as Adam's per-width scaling suggests; 3e-2 diverged at 128).
# Seconds per step, 1 thread, measured before declaring (machine shared): 0.25 (128 × 4, T 128 × 16),
# 0.49 (T 512 × 4), 0.82 (256 × 4): ≈ 16 + 16 + 25 + 27 min of training, ≈ 2 h with tracing and load.
SEARCH2 = SearchStudy(Protocol(), (
    Candidate(128, 4, 1e-2, 2000, seq_len=512, batch_size=4),
    Candidate(128, 4, 1e-2, 2000, weight_decay=0.1, seq_len=512, batch_size=4),
    Candidate(128, 4, 1e-2, 6000),
    Candidate(256, 4, 5e-3, 2000)))
SEARCH2_QUICK = SearchStudy(QUICK.protocol, (Candidate(16, 1, 1e-2, 10, seq_len=64, batch_size=2),
                                             Candidate(16, 1, 1e-2, 10, weight_decay=0.1)))


# ---- Part "search3": a third declared search, written after search2 found that its long runs memorised the
# 139 707 training tokens of python-topics (an epoch is 68 steps), and before any of its runs. Everything is the
# first two searches' (SEARCH_ARM, seed 0, the measurements, the rule, the order of cost, the stop at the first
# candidate meeting the rule) except the text: SEARCH3_CORPUS, the docstrings of the standard library and of
# torch 2.13.0 (workbench.text.corpus; 2 497 225 training tokens with its own BPE 1024 on Python 3.11.7, so an
# epoch is 1219 steps of 16 × 128 tokens; 281 587 validation tokens in 170 held-out modules), 18 times more.
#   1. the first search's best-trained model (128 × 4, lr 1e-2, wd 0, 2000 steps): 1.6 epochs instead of 29;
#   2. the same for 6000 steps (4.9 epochs): longer training without memorising (search2's 6000 steps were 88);
#   3. width 256 at lr 5e-3, 2000 steps (search2's candidate 4 on this text).
# Seconds per training step as in search2 (the text does not change the model): ≈ 0.25 (128 × 4), 0.82 (256 × 4):
# ≈ 8 + 25 + 27 min of training, plus the validation passes over 281 587 tokens.
SEARCH3_CORPUS = "docstrings:stdlib+torch"
SEARCH3 = SearchStudy(Protocol(corpus=SEARCH3_CORPUS), (
    Candidate(128, 4, 1e-2, 2000),
    Candidate(128, 4, 1e-2, 6000),
    Candidate(256, 4, 5e-3, 2000)))
SEARCH3_QUICK = SearchStudy(dataclasses.replace(QUICK.protocol, corpus="python-docstrings"),
                            (Candidate(16, 1, 1e-2, 10),))

# ---- Part "control": at the configuration the search chose, {pre-norm, OP} × {AdamW, SOAP}. Stage 1 (seed 0):
# each arm at CONTROL_LR_FACTORS × the chosen lr; the lr of lowest seed-0 validation perplexity is the arm's.
# Stage 2: each arm at its lr with the fresh seeds CONTROL_SEEDS (model init and data order), seed-major,
# so that an interrupted stage 2 still holds whole seeds of all four arms. Declared with the search.
CONTROL_LR_FACTORS = (1 / 3, 1.0, 3.0)
CONTROL_SEEDS = (1, 2, 3)
CONTROL_ARMS = tuple(RunConfig("softmax", b, o) for o in OPTIMIZERS for b in BLOCKS)  # pre-norm+AdamW first


@dataclass(frozen=True)
class ControlRun(JsonConfig):
    """One model of the control part: an arm (``mixer``, ``block``, ``optimizer``) at ``lr`` and ``seed``."""

    mixer: str
    block: str
    optimizer: str
    lr: float
    seed: int

    def __post_init__(self) -> None:
        self.arm  # validates mixer, block, optimizer
        check_int_fields(self, ("seed",), minimum=0)
        if not self.lr > 0:
            raise ValueError(f"ControlRun.lr must be > 0, got {self.lr}")

    @property
    def arm(self) -> RunConfig:
        return RunConfig(self.mixer, self.block, self.optimizer)

    @property
    def name(self) -> str:
        return f"{self.arm.name}-lr{self.lr:.3g}-seed{self.seed}"

    def protocol(self, protocol: Protocol) -> Protocol:
        return dataclasses.replace(protocol, train=dataclasses.replace(protocol.train, lr=self.lr, seed=self.seed))


def control_lrs(lr: float) -> tuple[float, ...]:
    return tuple(float(f"{lr * f:.3g}") for f in CONTROL_LR_FACTORS)


def control_stage1(lr: float, arms=CONTROL_ARMS) -> tuple[ControlRun, ...]:
    return tuple(ControlRun(a.mixer, a.block, a.optimizer, x, 0) for a in arms for x in control_lrs(lr))


def control_stage2(chosen: dict[str, float], arms=CONTROL_ARMS, seeds=CONTROL_SEEDS) -> tuple[ControlRun, ...]:
    """``chosen``: arm name → its lr (from stage 1)."""
    return tuple(ControlRun(a.mixer, a.block, a.optimizer, chosen[a.name], s) for s in seeds for a in arms
                 if a.name in chosen)


@dataclass(frozen=True)
class ControlStudy(StudyBase):
    """``protocol``: the chosen candidate's; ``runs``: stage 1 (stage 2 follows from its results)."""

    PROTOCOL: ClassVar[type] = Protocol
    RUN: ClassVar[type] = ControlRun
    protocol: Protocol
    runs: tuple[ControlRun, ...]
    seeds: tuple[int, ...] = CONTROL_SEEDS

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, data: Any):
        return cls(data["protocol"], tuple(data["runs"]), tuple(data.get("seeds", CONTROL_SEEDS)))


def control_study(candidate: Candidate, base: Protocol = Protocol(), seeds=CONTROL_SEEDS) -> ControlStudy:
    return ControlStudy(candidate.protocol(base), control_stage1(candidate.lr), tuple(seeds))


CONTROL_QUICK = ControlStudy(SEARCH_QUICK.runs[0].protocol(SEARCH_QUICK.protocol),
                             control_stage1(1e-2)[::3] + control_stage1(1e-2)[1::3], (1, 2))

# Set from results/search/results.json once the search had run (search_part.select), before any control run:
# no candidate met the rule, so this is the declared fallback (largest W8A8 per-tensor ratio), *not* a positive
# control. tests/test_outliers_parts.py checks that it is what select() gives on the committed search.
CONTROL_CANDIDATE: Candidate | None = Candidate(128, 4, 1e-2, 2000)
CONTROL = None if CONTROL_CANDIDATE is None else control_study(CONTROL_CANDIDATE)
PARTS = {"main": (FULL, QUICK), "search": (SEARCH, SEARCH_QUICK), "search2": (SEARCH2, SEARCH2_QUICK),
         "search3": (SEARCH3, SEARCH3_QUICK), "control": (CONTROL, CONTROL_QUICK)}

# ---- Part "seeds" (issue 18): the main grid (FULL: its protocol, runs and measurement) at the fresh seeds
# SEEDS_FRESH, seed-major, each run a ControlRun at the main protocol's lr; seed 0 is not rerun but read from
# the main study's results.json (``seed0``), after checking that its protocol and runs are the main study's.
SEEDS_FRESH = (1, 2)


def seed_runs(study: Study, seeds=SEEDS_FRESH) -> tuple[ControlRun, ...]:
    """``study``'s runs at each of ``seeds`` (seed-major), at ``study``'s lr."""
    return tuple(ControlRun(r.mixer, r.block, r.optimizer, study.protocol.train.lr, s) for s in seeds for r in study.runs)


@dataclass(frozen=True)
class SeedsStudy(StudyBase):
    """``main``: the study whose grid is rerun (its seed-0 results in ``seed0``, a results.json path relative to
    the repository root); ``runs``: its runs at the fresh seeds."""

    PROTOCOL: ClassVar[type] = Protocol
    RUN: ClassVar[type] = ControlRun
    protocol: Protocol
    runs: tuple[ControlRun, ...]
    seed0: str = "case_studies/outliers/results/results.json"

    @property
    def main(self) -> Study:
        arms = tuple(dict.fromkeys(r.arm for r in self.runs))
        return Study(self.protocol, arms)

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "seed0": self.seed0}

    @classmethod
    def from_dict(cls, data: Any):
        return cls(data["protocol"], tuple(data["runs"]), data["seed0"])


SEEDS = SeedsStudy(FULL.protocol, seed_runs(FULL))
SEEDS_QUICK = SeedsStudy(QUICK.protocol, seed_runs(QUICK), "runs/outliers-quick/results.json")
PARTS["seeds"] = (SEEDS, SEEDS_QUICK)
