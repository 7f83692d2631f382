"""The memorization case study as data: one :class:`Protocol` shared by all runs and a list of :class:`RunConfig`.

A run is one small language model, ``mem-<mixer>-s<seed>``, trained on real text (``workbench.text``) with
canaries written in at exact repetition counts and positions (:class:`workbench.tasks.TextCanaries`).
It is then probed for recitation (by repetition, prefix length, prefix offset and prompt position),
edited with K-FAC and with SVD truncation over a ρ sweep and probed again. Everything here is frozen and
JSON round-trippable; ``FULL`` and ``QUICK`` are the two studies ``python -m case_studies.memorization
[--quick]`` runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

from workbench import ModelConfig
from workbench.analysis.kfac import KINDS
from workbench.dataclass_io import JsonConfig, check_int_fields
from workbench.tasks import TextCanaries
from workbench.training import TrainConfig

from .._study import ProtocolBase, StudyBase, check_model_run



def _ints(values) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


STATS = ("train", "heldout")
METHODS = ("kfac", "svd")


@dataclass(frozen=True)
class Variant:
    """One edit of the sweep: ``method`` (``kfac`` or ``svd``) of the sites of ``kinds`` in ``layers``
    (``None``: every layer; negative indices count from the last); for K-FAC, ``stats`` says where the
    factors come from: ``train`` (rows of the training set) or ``heldout`` (the first half of the
    validation documents, never trained on; perplexity is measured on the second half)."""

    method: str
    kinds: tuple[str, ...] = ("mlp_in", "mlp_out")
    layers: Optional[tuple[int, ...]] = None
    stats: Optional[str] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        if self.layers is not None:
            object.__setattr__(self, "layers", _ints(self.layers))
        if self.method not in METHODS:
            raise ValueError(f"Variant.method must be one of {METHODS}, got {self.method!r}")
        bad = [k for k in self.kinds if k not in KINDS]
        if not self.kinds or bad:
            raise ValueError(f"Variant.kinds must be a non-empty subset of {KINDS}, got {self.kinds!r}")
        if (self.method == "kfac") != (self.stats is not None) or (self.stats is not None and self.stats not in STATS):
            raise ValueError(f"a kfac Variant needs stats in {STATS}, an svd Variant none; got {self.method!r} "
                             f"with stats={self.stats!r}")

    @property
    def sites_name(self) -> str:
        layers = ("all layers" if self.layers is None else "last layer" if self.layers == (-1,)
                  else "layers " + ",".join(map(str, self.layers)))
        return f"{'+'.join(self.kinds)} ({layers})"

    @property
    def name(self) -> str:
        base = {"kfac": "K-FAC", "svd": "SVD"}[self.method]
        return f"{base} {self.sites_name}" + (f", {self.stats} stats" if self.stats else "")


MLP = ("mlp_in", "mlp_out")
LAST = (-1,)
PREREGISTERED = Variant("kfac", MLP, LAST, stats="heldout")
"""The edit fixed on the development seed before any evaluation seed was trained (see the README)."""
VARIANTS = (PREREGISTERED, Variant("svd", MLP, LAST))
DEV_SEED = 0
"""The development seed: the committed run in ``results/development`` and the two pilots chose the sites,
the source of the statistics and the ρ rule on it. No evaluation run uses it."""
SEEDS = (1, 2, 3)
ABLATIONS = ("mean", "zero")


TRAIN = TrainConfig(steps=1500, batch_size=16, lr=3e-3, warmup_steps=100, eval_every=1500, eval_batches=2, seed=0)


@dataclass(frozen=True)
class Protocol(ProtocolBase):
    """How every run is trained, edited and probed.

    Data: :class:`TextCanaries` with these fields (``n_rows = train.steps × train.batch_size``, so each
    canary is seen exactly its repetition count); the run's seed replaces ``train.seed`` and seeds the
    canaries, the row layout and the model. Training: ``train`` (AdamW, linear warmup, cosine to lr/10,
    clip 1, weight decay 0.1), the rows in order.

    Recitation (greedy): main probe ``prefix_len`` → ``suffix_len`` at offset 0 with the prompt at the
    canary's training position (after that many tokens of validation text); by prefix length over
    ``prefix_lens``; the prompt-position probe also puts every prompt at position 0; the offset probe of
    Xu et al. over ``offsets`` with ``offset_prefix_len`` → ``offset_suffix_len``, the prefix placed at
    position 0 (``zero``) and at the position its tokens had in training (``trained``).

    Editing: every :class:`Variant` of ``variants`` at every ρ of ``rhos``, K-FAC factors from the first
    half of the validation windows (``labels``: sampled from the model, as in the paper), SVD keeping the
    same fraction of spectral energy; perplexity and top-10 agreement on the second half. The headline
    edit of a variant is the smallest ρ whose perplexity stays within ``ppl_budget`` × the unedited
    model's. Controls at the headline: ``random_draws`` random bases keeping as many components per layer
    as the first variant's headline edit, and the last layer's MLP ablated (``ablations``: its output
    replaced by its mean over the statistics text, or by zero). BalancedSubnet (Sakarvadia et al.) on the
    first variant's sites, told the memorized canaries (one training row each, loss on the canary's
    tokens) and the statistics text as clean data, for ``subnet_epochs`` epochs at each pruning ratio of
    ``subnet_ratios`` (the authors' other settings); its headline is the largest ratio within the budget
    (it enters the sweep with ρ = 1 − ratio, so the same rule picks it).
    """

    vocab_size: int = 1024
    seq_len: int = 128
    canary_len: int = 32
    repetitions: tuple[int, ...] = (1, 4, 16, 64, 128)
    positions: tuple[int, ...] = (0, 64)
    canaries_per_level: int = 10
    train: TrainConfig = TRAIN
    prefix_len: int = 16
    suffix_len: int = 16
    prefix_lens: tuple[int, ...] = (4, 8, 16)
    offsets: tuple[int, ...] = (0, 1, 2, 4, 8, 16)
    offset_prefix_len: int = 8
    offset_suffix_len: int = 8
    variants: tuple[Variant, ...] = VARIANTS
    kfac_batches: int = 32
    labels: str = "sampled"
    rhos: tuple[float, ...] = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
    ppl_budget: float = 1.2
    random_draws: int = 5
    ablations: tuple[str, ...] = ABLATIONS
    subnet_ratios: tuple[float, ...] = (0.25, 0.5, 0.75, 0.9)
    subnet_epochs: int = 30

    FLAT_TRAIN_KEYS: ClassVar[tuple[str, ...]] = ("steps", "batch_size", "lr", "warmup_steps", "seed")

    @classmethod
    def train_from_flat(cls, flat: dict[str, Any]) -> TrainConfig:
        """The development run's results.json (written with flat training fields) evaluated training once, at
        the end: ``eval_every = steps``."""
        return dataclasses.replace(TRAIN, **flat, eval_every=flat.get("steps", TRAIN.steps))

    def __post_init__(self) -> None:
        self._check_train()
        for name in ("repetitions", "positions", "prefix_lens", "offsets"):
            object.__setattr__(self, name, _ints(getattr(self, name)))
        object.__setattr__(self, "variants", tuple(v if isinstance(v, Variant) else Variant(**v)
                                                    for v in self.variants))
        object.__setattr__(self, "ablations", tuple(self.ablations))
        object.__setattr__(self, "subnet_ratios", tuple(float(r) for r in self.subnet_ratios))
        if any(not 0 < r < 1 for r in self.subnet_ratios):
            raise ValueError(f"Protocol.subnet_ratios must be numbers in (0, 1), got {self.subnet_ratios!r}")
        if not self.variants or len(set(self.variants)) != len(self.variants):
            raise ValueError(f"Protocol.variants must be distinct Variants, got {self.variants!r}")
        object.__setattr__(self, "rhos", tuple(float(r) for r in self.rhos))
        check_int_fields(self, ("prefix_len", "suffix_len", "offset_prefix_len", "offset_suffix_len", "kfac_batches"))
        check_int_fields(self, ("random_draws",), minimum=0)
        check_int_fields(self, ("subnet_epochs",))
        if not self.rhos or any(not 0 < r < 1 for r in self.rhos):
            raise ValueError(f"Protocol.rhos must be numbers in (0, 1), got {self.rhos!r}")
        if self.labels not in ("sampled", "gold"):
            raise ValueError(f"Protocol.labels must be 'sampled' or 'gold', got {self.labels!r}")
        if any(a not in ABLATIONS for a in self.ablations):
            raise ValueError(f"Protocol.ablations must be a subset of {ABLATIONS}, got {self.ablations!r}")
        L = self.canary_len
        if self.prefix_len + self.suffix_len > L or max(self.prefix_lens) + self.suffix_len > L:
            raise ValueError(f"prefix + suffix must fit in canary_len = {L}")
        if max(self.offsets) + self.offset_prefix_len + self.offset_suffix_len > L:
            raise ValueError(f"the largest offset + offset_prefix_len + offset_suffix_len must fit in canary_len = {L}")
        self.task(0)  # TextCanaries checks positions, lengths and rows

    def task(self, seed: int) -> TextCanaries:
        """The canaries and rows of a run with seed ``seed``."""
        return TextCanaries(vocab_size=self.vocab_size, seq_len=self.seq_len, canary_len=self.canary_len,
                            repetitions=self.repetitions, positions=self.positions,
                            canaries_per_level=self.canaries_per_level, n_rows=self.train.steps * self.train.batch_size,
                            seed=seed)


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """One model with one ``seed`` (canaries, row layout, initialisation, ``train.seed``): ``n_layers``
    pre-norm blocks of ``mixer`` + GELU MLP, learned positions, LayerNorm."""

    mixer: str
    seed: int = 1
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_mlp: int = 512
    chunk_size: int = 32

    def __post_init__(self) -> None:
        check_model_run(self)
        check_int_fields(self, ("seed",), minimum=0)

    @property
    def name(self) -> str:
        return f"mem-{self.mixer.replace('_', '-')}-s{self.seed}"

    def model_config(self, protocol: Protocol, d_vocab: int) -> ModelConfig:
        return ModelConfig(d_vocab=d_vocab, d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                           d_head=self.d_model // self.n_heads, d_mlp=self.d_mlp, n_ctx=protocol.seq_len,
                           mixer=self.mixer, chunk_size=self.chunk_size, seed=self.seed)

    def train_config(self, protocol: Protocol) -> TrainConfig:
        return dataclasses.replace(protocol.train, seed=self.seed)


@dataclass(frozen=True)
class Study(StudyBase):
    PROTOCOL: ClassVar[type] = Protocol
    RUN: ClassVar[type] = RunConfig
    protocol: Protocol
    runs: tuple[RunConfig, ...]


def grid(seeds=SEEDS, mixers=("delta", "softmax"), **model) -> tuple[RunConfig, ...]:
    """Every mixer with every seed, seed-major (a partial run still holds both mixers of its first seeds)."""
    return tuple(RunConfig(m, s, **model) for s in seeds for m in mixers)


FULL = Study(protocol=Protocol(), runs=grid())

QUICK = Study(
    protocol=Protocol(vocab_size=512, seq_len=48, canary_len=16, repetitions=(1, 8), positions=(0, 16),
                      canaries_per_level=2,
                      train=dataclasses.replace(TRAIN, steps=30, batch_size=8, warmup_steps=5, eval_every=30),
                      prefix_len=8, suffix_len=8,
                      prefix_lens=(4, 8), offsets=(0, 2, 4), offset_prefix_len=4, offset_suffix_len=4,
                      kfac_batches=2, rhos=(0.9, 0.6), random_draws=2, subnet_ratios=(0.5,), subnet_epochs=2),
    runs=(RunConfig("delta", 1, d_model=32, n_heads=2, d_mlp=64, chunk_size=16),  # two seeds: pooling is exercised
          RunConfig("softmax", 2, d_model=32, n_heads=2, d_mlp=64, chunk_size=16)),
)
