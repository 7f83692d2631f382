"""The language-modelling study as data: one :class:`Protocol` shared by every run and a list of :class:`RunConfig`.

A run is one model of :data:`MODELS` trained with one seed, named ``<model>-s<seed>``: the same model
size, data, token budget and optimiser for all. The models are the comparison of Schlag, Irie &
Schmidhuber (2021, Table 2): softmax attention; the sum rule (linear attention) and the delta rule, each
with the feature maps elu+1 (without and with normalisation), DPFP-ν (ν = 1, 2, 3) and FAVOR+; plus the
Recurrent Delta Net (Irie et al. 2021) and the modern self-referential weight matrix (SRWM, Irie et al.
2022). Frozen and JSON round-trippable; ``FULL`` and ``QUICK`` are what
``python -m case_studies.language_modelling [--quick]`` runs.

Normalisation, per rule (see README.md, "What each model is"):
  sum rule   ``-norm``: the attention normaliser (``LinearConfig.sum_norm``: o_t / z_tᵀφ(q_t)); DPFP and
             FAVOR+ carry it too (as the linear Transformer and the Performer do); plain ``elu1`` has none.
  delta rule φ(q), φ(k) divided by the sum of their components (``DeltaConfig.qk_norm="sum"``, the paper's
             normalisation); plain ``elu1`` is L2-normalised instead (``qk_norm="l2"``, DeltaNet's), since
             the delta rule with unnormalised keys diverges (β‖φ(k)‖² > 2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from workbench import ModelConfig
from workbench.dataclass_io import JsonConfig, check_int_fields
from workbench.mixers import mixer_config
from workbench.tasks.text import TextLM
from workbench.training import TrainConfig

from .._study import ProtocolBase, StudyBase

FAVOR_FEATURES = 64  # m: d_k = 2m = 128 with d_head 32 (as DPFP-2)

# name → (rule, feature map label, mixer config as data), in table order
_FEATURE_MAPS = (  # (label, linear options, delta options)
    ("elu1", dict(feature_map="elu1", sum_norm=False), dict(phi="elu1", qk_norm="l2")),
    ("elu1-norm", dict(feature_map="elu1", sum_norm=True), dict(phi="elu1", qk_norm="sum")),
    ("dpfp1", dict(feature_map="dpfp", dpfp_nu=1, sum_norm=True), dict(phi="dpfp", dpfp_nu=1, qk_norm="sum")),
    ("dpfp2", dict(feature_map="dpfp", dpfp_nu=2, sum_norm=True), dict(phi="dpfp", dpfp_nu=2, qk_norm="sum")),
    ("dpfp3", dict(feature_map="dpfp", dpfp_nu=3, sum_norm=True), dict(phi="dpfp", dpfp_nu=3, qk_norm="sum")),
    ("favor", dict(feature_map="favor", favor_features=FAVOR_FEATURES, sum_norm=True),
     dict(phi="favor", favor_features=FAVOR_FEATURES, qk_norm="sum")),
)
FEATURE_MAPS = tuple(f[0] for f in _FEATURE_MAPS)
RULES = ("sum", "delta")

BASELINE = "softmax"  # the study's baseline model: softmax attention (a model name of this study)
MODELS: dict[str, dict[str, Any]] = dict(softmax={"kind": "softmax"})
MODELS.update({f"sum-{label}": {"kind": "linear", **lin} for label, lin, _ in _FEATURE_MAPS})
MODELS.update({f"delta-{label}": {"kind": "delta", "conv_size": 0, **dlt} for label, _, dlt in _FEATURE_MAPS})
MODELS.update({"rec-delta": {"kind": "rec_delta"}, "srwm": {"kind": "srwm"}})


def rule_and_map(model: str) -> tuple[str, str]:
    """(update rule, feature map) of a model name: ("sum", "dpfp2"), ("softmax", "softmax"), ("rec-delta", "-")."""
    for rule in RULES:
        if model.startswith(rule + "-"):
            return rule, model[len(rule) + 1:]
    return model, "-"


TRAIN = TrainConfig(steps=250, batch_size=32, lr=3e-3, warmup_steps=25, eval_every=50, eval_batches=4, seed=0)


@dataclass(frozen=True)
class Protocol(ProtocolBase):
    """What every run shares.

    Model: ``n_layers`` pre-norm blocks of ``n_heads`` heads × ``d_head`` (d_model ``d_model``), GELU MLP of
    ``d_mlp``, learned positions, LayerNorm. Data: the ``python-topics`` corpus (English from CPython's
    ``pydoc_data``, split into train and validation by document; ``val_fraction`` of the characters held out),
    one token per UTF-8 byte (vocabulary 256: the corpus is almost all ASCII, so per byte ≈ per character),
    windows of ``seq_len`` tokens. Training: ``train`` (AdamW, warmup then cosine to
    lr/10, clip 1, weight decay 0.1 on matrices): ``steps × batch_size × seq_len`` tokens for every model;
    the run's seed replaces ``train.seed`` (data order, evaluation batches) and seeds the model (init,
    FAVOR+ features). Measurement: validation loss, perplexity (per byte) and bits per byte over all
    held-out documents (:func:`workbench.text.evaluate_text`)."""

    seq_len: int = 128
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    d_head: int = 32
    d_mlp: int = 256
    train: TrainConfig = TRAIN
    val_fraction: float = 0.1

    FLAT_TRAIN_KEYS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self._check_train()
        check_int_fields(self, ("seq_len", "d_model", "n_layers", "n_heads", "d_head", "d_mlp"))
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"Protocol.val_fraction must be in (0, 1), got {self.val_fraction!r}")

    def task(self) -> TextLM:
        return TextLM(corpus="python-topics", tokenizer="bytes", vocab_size=256, seq_len=self.seq_len,
                      val_fraction=self.val_fraction)

    @property
    def tokens_per_run(self) -> int:
        return self.train.steps * self.train.batch_size * self.seq_len


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """One model of :data:`MODELS` with one ``seed`` (data order, evaluation batches, initialisation)."""

    model: str
    seed: int = 0

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"RunConfig.model must be one of {list(MODELS)}, got {self.model!r}")
        check_int_fields(self, ("seed",), minimum=0)

    @property
    def name(self) -> str:
        return f"{self.model}-s{self.seed}"

    def model_config(self, protocol: Protocol, d_vocab: int) -> ModelConfig:
        p = protocol
        return ModelConfig(d_vocab=d_vocab, d_model=p.d_model, n_layers=p.n_layers, n_heads=p.n_heads,
                           d_head=p.d_head, d_mlp=p.d_mlp, n_ctx=p.seq_len, mixer=mixer_config(MODELS[self.model]),
                           seed=self.seed)

    def train_config(self, protocol: Protocol) -> TrainConfig:
        return dataclasses.replace(protocol.train, seed=self.seed)


@dataclass(frozen=True)
class Study(StudyBase):
    PROTOCOL: ClassVar[type] = Protocol
    RUN: ClassVar[type] = RunConfig
    protocol: Protocol
    runs: tuple[RunConfig, ...]


SEEDS = (0, 1, 2)


def grid(models=tuple(MODELS), seeds=SEEDS) -> tuple[RunConfig, ...]:
    """Every model with every seed, seed-major (all models of seed 0 first: a partial run is still a full table)."""
    return tuple(RunConfig(m, s) for s in seeds for m in models)


FULL = Study(Protocol(), grid())
QUICK = Study(Protocol(val_fraction=0.01, seq_len=32, d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32,
                       train=dataclasses.replace(TRAIN, steps=4, batch_size=4, warmup_steps=2, eval_every=2,
                                                 eval_batches=1)),
              grid(seeds=(0, 1)))
