"""The study as data: one :class:`Protocol` shared by every run and the runs, one per (mixer, seed).

A run trains one 4-layer text model on the study's corpus (python-topics plus the synthetic attribute and quirky
lines, :mod:`.corpus`) and answers the three questions on it: lenses, steering, the latent-knowledge probe.
Everything is frozen and JSON round-trippable; ``FULL`` and ``QUICK`` are what ``python -m case_studies.transfer
[--quick]`` runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from workbench import ModelConfig
from workbench.dataclass_io import JsonConfig, check_int_fields
from workbench.training import TrainConfig

from .._study import ProtocolBase, StudyBase, check_model_run

MIXERS_STUDIED = ("softmax", "delta", "gated_delta", "rec_delta")
SEEDS = (0, 1, 2)
TRAIN = TrainConfig(steps=1200, batch_size=16, lr=3e-3, warmup_steps=100, eval_every=200, eval_batches=2, seed=0)
QUIRK_TRAIN = TrainConfig(steps=500, batch_size=16, lr=1e-3, warmup_steps=20, eval_every=100, eval_batches=2, seed=0)


@dataclass(frozen=True)
class Protocol(ProtocolBase):
    """Model: ``n_layers`` pre-norm blocks, ``n_heads`` heads of ``d_head``, an MLP of ``d_mlp``, BPE of
    ``vocab_size`` on windows of ``seq_len``; trained with ``train`` (its seed is replaced by the run's seed).
    Corpus: ``synthetic_docs`` documents of ``lines_per_doc`` synthetic lines (seed ``corpus_seed``, the same for
    every run) beside python-topics. Lens: a tuned lens trained for ``lens_steps`` steps on ``lens_batch`` training
    windows each (the authors' SGD recipe), measured on ``lens_groups`` groups of the validation windows of
    python-topics only. Steering: CAA at ``steer_layer`` (``hook_resid_pre``) from ``n_prompts`` "good" minus
    ``n_prompts`` "bad" prompts, applied to ``n_prompts`` held-out neutral ("some") prompts at every position, at each
    multiplier in ``strengths``; state steering adds the state's contrastive direction at the same layer, every
    position, ``readout`` mode — alone, norm-matched to the CAA vector, and together with it. Probe: a copy of
    the model fine-tuned on quirky lines with ``quirk_train`` (loss on the answers only; its seed is the run's),
    then ``probe_items`` items per persona for training (Alice) and as many for testing (Alice and Bob, other
    draws), the residual at the prompt's last token of every layer."""

    d_model: int = 64
    n_layers: int = 4
    n_heads: int = 4
    d_head: int = 16
    d_mlp: int = 256
    vocab_size: int = 1024
    seq_len: int = 64
    synthetic_docs: int = 200
    lines_per_doc: int = 60
    corpus_seed: int = 0
    train: TrainConfig = TRAIN
    lens_steps: int = 250
    lens_batch: int = 16
    lens_groups: int = 8
    steer_layer: int = 2
    n_prompts: int = 64
    strengths: tuple[float, ...] = (-4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0)
    probe_items: int = 400
    quirk_train: TrainConfig = QUIRK_TRAIN

    def __post_init__(self) -> None:
        self._check_train()
        quirk = self.quirk_train
        quirk = quirk if isinstance(quirk, TrainConfig) else TrainConfig.from_dict(quirk)
        if quirk.out_dir is not None:
            raise ValueError("Protocol.quirk_train.out_dir must be None; the study chooses where runs go")
        object.__setattr__(self, "quirk_train", quirk)
        check_int_fields(self, ("d_model", "n_layers", "n_heads", "d_head", "d_mlp", "seq_len", "synthetic_docs",
                                "lines_per_doc", "lens_steps", "lens_batch", "lens_groups", "n_prompts", "probe_items"))
        if not 0 <= self.steer_layer < self.n_layers:
            raise ValueError(f"steer_layer must be in [0, {self.n_layers - 1}], got {self.steer_layer}")
        if 0.0 not in self.strengths:
            raise ValueError("strengths must include 0.0 (the unsteered baseline)")
        object.__setattr__(self, "strengths", tuple(float(s) for s in self.strengths))


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """One model: ``mixer`` with its defaults, initialised and trained with ``seed``."""

    mixer: str
    seed: int = 0
    n_heads: int = 4  # for check_model_run; the protocol's n_heads is what the model gets
    d_model: int = 64

    def __post_init__(self) -> None:
        check_model_run(self)
        check_int_fields(self, ("seed",), minimum=0)

    @property
    def name(self) -> str:
        return f"{self.mixer.replace('_', '-')}-s{self.seed}"

    def model_config(self, protocol: Protocol, d_vocab: int) -> ModelConfig:
        return ModelConfig(d_vocab=d_vocab, d_model=protocol.d_model, n_layers=protocol.n_layers,
                           n_heads=protocol.n_heads, d_head=protocol.d_head, d_mlp=protocol.d_mlp,
                           n_ctx=protocol.seq_len, mixer=self.mixer, seed=self.seed)


@dataclass(frozen=True)
class Study(StudyBase):
    PROTOCOL: ClassVar[type] = Protocol
    RUN: ClassVar[type] = RunConfig
    protocol: Protocol
    runs: tuple[RunConfig, ...]


def runs(mixers, seeds, d_model: int = 64, n_heads: int = 4) -> tuple[RunConfig, ...]:
    """Seed-major: every mixer at the first seed, then at the next, so a stopped study has whole seeds."""
    return tuple(RunConfig(m, s, n_heads, d_model) for s in seeds for m in mixers)


FULL = Study(Protocol(), runs(MIXERS_STUDIED, SEEDS))
QUICK = Study(Protocol(d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, vocab_size=1024, seq_len=32,
                       synthetic_docs=20, lines_per_doc=20, steer_layer=1, lens_steps=10, lens_batch=4, lens_groups=2,
                       n_prompts=8, strengths=(-2.0, 0.0, 2.0), probe_items=32,
                       quirk_train=TrainConfig(steps=10, batch_size=4, lr=3e-3, warmup_steps=2, eval_every=10,
                                               eval_batches=1, seed=0),
                       train=TrainConfig(steps=20, batch_size=4, lr=3e-3, warmup_steps=5, eval_every=10,
                                         eval_batches=1, seed=0)),
              runs(("softmax", "delta"), (0,), d_model=32, n_heads=2))
