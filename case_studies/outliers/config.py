"""The outlier case study as data: one :class:`Protocol` shared by every run and a list of :class:`RunConfig`.

A run is one small language model on the Python documentation (``workbench.text``), named
``<mixer>-<block>-<optimizer>``: trained with checkpoints every ``save_every`` steps, traced at each
checkpoint (kurtosis over training) and quantised to W8A8 at the end. Frozen and JSON round-trippable;
``FULL`` and ``QUICK`` are what ``python -m case_studies.outliers [--quick]`` runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

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
    residual branches × ``branch_scale``, QK-norm). Data: the ``python-topics`` corpus, byte-level BPE of
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
        return TextLM(corpus="python-topics", tokenizer="bpe", vocab_size=self.vocab_size, seq_len=self.seq_len)


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
