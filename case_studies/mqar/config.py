"""The MQAR case study as data: one :class:`Protocol` shared by all runs and a list of :class:`RunConfig`.

A run is one model, ``mqar-<mixer>-d<d_model>``, trained on a mixture of the Zoology (T, kv) settings and
then evaluated on each setting separately, on a capacity sweep (T fixed, more pairs than trained on) and
probed. Everything here is frozen and JSON round-trippable; ``FULL`` and ``QUICK`` are the two studies
``python -m case_studies.mqar [--quick]`` runs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from workbench import ModelConfig
from workbench.mixers import mixer_config, mixer_fields
from workbench.dataclass_io import JsonConfig, check_int_fields
from workbench.tasks import MQAR
from workbench.training import TrainConfig

from .._study import ProtocolBase, StudyBase, check_model_run

MIXERS_STUDIED = ("delta", "gated_delta", "linear", "softmax")  # the runs of the study (data, in table order)


@dataclass(frozen=True)
class Setting:
    """One MQAR (sequence length, key–value pairs) combination."""

    seq_len: int
    num_kv_pairs: int

    @property
    def label(self) -> str:
        return f"T={self.seq_len}, kv={self.num_kv_pairs}"


TRAIN = TrainConfig(steps=2000, batch_size=16, lr=3e-3, warmup_steps=100, eval_every=250, eval_batches=4, seed=0)


@dataclass(frozen=True)
class Protocol(ProtocolBase):
    """How every run is trained, evaluated and probed.

    Training: ``train`` (AdamW, linear warmup, cosine to lr/10, clip 1, weight decay 0.1) on batches drawn
    from ``train_settings`` (one setting per step, chosen at random; ``train.batch_size`` counts sequences
    of the longest setting, shorter settings get proportionally more, so every step holds the same number
    of tokens); ``train.seed`` is the study's seed (:attr:`seed`, also of the evaluation samples). Evaluation: ``eval_sequences`` fresh sequences per setting (each setting
    its own seed, see ``run.eval_seed``). Capacity sweep: ``sweep_sequences`` sequences of length
    ``sweep_seq_len`` with each of ``sweep_kv`` pairs.
    Probes: ``probe_sequences`` sequences of ``probe_lag_setting`` (by lag) and of
    ``probe_capacity_setting`` (by pairs stored).
    """

    vocab_size: int = 512
    train_settings: tuple[Setting, ...] = (Setting(64, 4), Setting(128, 8), Setting(256, 16))
    random_non_queries: bool = False
    power_a: float = 0.01
    train: TrainConfig = TRAIN
    eval_sequences: int = 1024
    sweep_seq_len: int = 256
    sweep_kv: tuple[int, ...] = (4, 8, 16, 24, 32, 48, 64)
    sweep_sequences: int = 256
    probe_sequences: int = 8
    probe_lag_setting: Setting = Setting(256, 16)
    probe_capacity_setting: Setting = Setting(256, 64)

    FLAT_TRAIN_KEYS: ClassVar[tuple[str, ...]] = ("steps", "batch_size", "lr", "warmup_steps", "eval_every", "seed")

    def __post_init__(self) -> None:
        self._check_train()
        object.__setattr__(self, "train_settings", tuple(
            s if isinstance(s, Setting) else Setting(**s) for s in self.train_settings))
        object.__setattr__(self, "sweep_kv", tuple(int(k) for k in self.sweep_kv))
        for name in ("probe_lag_setting", "probe_capacity_setting"):
            s = getattr(self, name)
            object.__setattr__(self, name, s if isinstance(s, Setting) else Setting(**s))
        if not self.train_settings:
            raise ValueError("Protocol.train_settings is empty; give at least one Setting(seq_len, num_kv_pairs)")
        check_int_fields(self, ("eval_sequences", "sweep_sequences", "probe_sequences"))
        for s in self.tasks() + self.sweep_tasks():  # MQAR validates every (T, kv, vocab) combination
            if s.seq_len > self.max_seq_len:
                raise ValueError(f"{s} is longer than the longest training setting ({self.max_seq_len}); the "
                                 "model's learned positions stop there — shorten it or add a longer train setting")

    @property
    def max_seq_len(self) -> int:
        return max(s.seq_len for s in self.train_settings)

    def task(self, setting: Setting) -> MQAR:
        return MQAR(vocab_size=self.vocab_size, seq_len=setting.seq_len, num_kv_pairs=setting.num_kv_pairs,
                    power_a=self.power_a, random_non_queries=self.random_non_queries)

    def tasks(self) -> list[MQAR]:
        return [self.task(s) for s in self.train_settings]

    def sweep_tasks(self) -> list[MQAR]:
        return [self.task(Setting(self.sweep_seq_len, kv)) for kv in self.sweep_kv] + [
            self.task(self.probe_lag_setting), self.task(self.probe_capacity_setting)]


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """One model: 2 blocks of ``mixer`` (no MLP, as Zoology's MQAR models), ``n_heads`` heads of
    d_model / n_heads, learned positions, LayerNorm; a mixer with a short convolution has ``conv_size``."""

    mixer: str
    d_model: int
    n_layers: int = 2
    n_heads: int = 2
    conv_size: int = 4
    chunk_size: int = 64
    model_seed: int = 0

    def __post_init__(self) -> None:
        check_model_run(self)

    @property
    def name(self) -> str:
        return f"mqar-{self.mixer.replace('_', '-')}-d{self.d_model}"

    def model_config(self, protocol: Protocol) -> ModelConfig:
        return ModelConfig(d_vocab=protocol.vocab_size, d_model=self.d_model, n_layers=self.n_layers,
                           n_heads=self.n_heads, d_head=self.d_model // self.n_heads, n_ctx=protocol.max_seq_len,
                           mixer=self.mixer_config(), mlp="none", d_mlp=0, chunk_size=self.chunk_size,
                           seed=self.model_seed)

    def mixer_config(self):
        """The mixer's defaults, with ``conv_size`` where the mixer has a short convolution by default (a mixer
        whose convolution is an option that defaults to none, such as linear attention's, keeps none)."""
        cfg = mixer_config(self.mixer)
        has_conv = "conv_size" in mixer_fields(self.mixer) and getattr(cfg, "conv_size", 0) > 0
        return cfg.replace(conv_size=self.conv_size) if has_conv else cfg


@dataclass(frozen=True)
class Study(StudyBase):
    PROTOCOL: ClassVar[type] = Protocol
    RUN: ClassVar[type] = RunConfig
    protocol: Protocol
    runs: tuple[RunConfig, ...]


FULL = Study(
    protocol=Protocol(),
    runs=tuple(RunConfig(mixer, d) for d in (64, 128) for mixer in MIXERS_STUDIED),
)

QUICK = Study(
    protocol=Protocol(vocab_size=48, train_settings=(Setting(16, 2), Setting(32, 4)),
                      train=dataclasses.replace(TRAIN, steps=40, batch_size=8, warmup_steps=5, eval_every=20),
                      eval_sequences=32, sweep_seq_len=32, sweep_kv=(2, 4, 8), sweep_sequences=16,
                      probe_sequences=2, probe_lag_setting=Setting(32, 4), probe_capacity_setting=Setting(32, 8)),
    runs=tuple(RunConfig(mixer, d, chunk_size=16) for d in (16, 32) for mixer in MIXERS_STUDIED),
)
