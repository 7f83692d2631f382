"""The recurrent-FWP case study as data: one :class:`Protocol` (both tasks, training, test and probe sizes)
and a list of :class:`RunConfig` (task × mixer × seed).

Models follow Irie et al. (2021, IDSIA/recurrent-fwp ``algorithmic/``) scaled to a CPU: their models are
4 layers, d_model 256, 16 heads of 16, FF ×4; ours are 2 layers, d_model 64, 4 heads of 16, FF 128, no dropout.
``MIXER_OPTIONS`` sets each studied mixer as the paper has it: the Linear Transformer of Katharopoulos et
al. (elu+1 features, sum normalisation) and a Delta Net without the short convolution (neither had one).
``FULL`` and ``QUICK`` are the two studies ``python -m case_studies.recurrent_fwp [--quick]`` runs; ``LONG``
(``--long``) trains the four cheaper models 4× longer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Union

from workbench import ModelConfig
from workbench.dataclass_io import JsonConfig, check_int_fields
from workbench.mixers import mixer_config
from workbench.tasks import CodeExecution, ListOps
from workbench.training import TrainConfig

from .._study import ProtocolBase, StudyBase, check_model_run

MIXERS_STUDIED = ("linear", "delta", "rec_delta", "delta_lstm", "softmax")  # table order, as in the paper
TASKS = ("code_execution", "listops")
MIXER_OPTIONS: dict[str, dict[str, Any]] = {
    "linear": {"feature_map": "elu1", "sum_norm": True},
    "delta": {"conv_size": 0},
}

TRAIN = TrainConfig(steps=500, batch_size=32, lr=4e-3, warmup_steps=50, eval_every=100, eval_batches=4, seed=0)


@dataclass(frozen=True)
class Protocol(ProtocolBase):
    """How every run is trained, tested and probed.

    Training: ``train`` (AdamW, warmup, cosine, clip 1) on fresh batches of the run's task (data seed
    ``train.seed + run.seed``). Test: ``test_sequences`` fresh sequences per task, drawn from the seed
    :meth:`test_seed` (the same for every model). Probes: ``probe_sequences`` further sequences
    (:meth:`probe_seed`), half to fit each linear probe and half to score it.
    """

    code_execution: CodeExecution = CodeExecution(num_vars=3, seq_len=48)
    listops: ListOps = ListOps(depth=3, max_args=5, min_length=24, max_length=36)
    train: TrainConfig = TRAIN
    test_sequences: int = 2000
    probe_sequences: int = 256

    FLAT_TRAIN_KEYS: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self) -> None:
        self._check_train()
        if not isinstance(self.code_execution, CodeExecution):
            object.__setattr__(self, "code_execution", CodeExecution(**_task_fields(self.code_execution)))
        if not isinstance(self.listops, ListOps):
            object.__setattr__(self, "listops", ListOps(**_task_fields(self.listops)))
        check_int_fields(self, ("test_sequences", "probe_sequences"))
        if self.probe_sequences < 4:
            raise ValueError(f"Protocol.probe_sequences must be ≥ 4 (half fit, half score), got {self.probe_sequences}")

    def task(self, name: str) -> Union[CodeExecution, ListOps]:
        if name not in TASKS:
            raise ValueError(f"unknown task {name!r}; the study has {TASKS}")
        return getattr(self, name)

    def test_seed(self, name: str) -> int:
        return self.seed + 2_000_000 + 1_000 * TASKS.index(name)

    def probe_seed(self, name: str) -> int:
        return self.seed + 3_000_000 + 1_000 * TASKS.index(name)


def _task_fields(data: Any) -> dict:
    data = dict(data)
    data.pop("name", None)
    return data


@dataclass(frozen=True)
class RunConfig(JsonConfig):
    """One model on one task: ``n_layers`` pre-norm blocks of ``mixer`` (with ``MIXER_OPTIONS``) and a GELU
    MLP of ``d_mlp``, ``n_heads`` heads of d_model / n_heads, learned positions; ``seed`` shifts both the
    initialisation and the training data."""

    task: str
    mixer: str
    seed: int = 0
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_mlp: int = 128
    chunk_size: int = 16

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"RunConfig.task must be one of {TASKS}, got {self.task!r}")
        check_model_run(self)
        check_int_fields(self, ("seed",), minimum=0)

    @property
    def name(self) -> str:
        return f"{self.task.replace('_', '-')}-{self.mixer.replace('_', '-')}-s{self.seed}"

    def model_config(self, protocol: Protocol) -> ModelConfig:
        task = protocol.task(self.task)
        mixer = mixer_config(self.mixer).replace(**MIXER_OPTIONS.get(self.mixer, {}))
        return ModelConfig(d_vocab=task.d_vocab, d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                           d_head=self.d_model // self.n_heads, n_ctx=task.seq_len, mixer=mixer, mlp="gelu",
                           d_mlp=self.d_mlp, chunk_size=self.chunk_size, seed=self.seed)

    def train_config(self, protocol: Protocol) -> TrainConfig:
        return dataclasses.replace(protocol.train, seed=protocol.train.seed + self.seed)


@dataclass(frozen=True)
class Study(StudyBase):
    PROTOCOL: ClassVar[type] = Protocol
    RUN: ClassVar[type] = RunConfig
    protocol: Protocol
    runs: tuple[RunConfig, ...]


def runs_for(seeds_by_mixer: dict[str, tuple[int, ...]]) -> tuple[RunConfig, ...]:
    return tuple(RunConfig(task, mixer, seed) for task in TASKS for mixer in MIXERS_STUDIED
                 for seed in seeds_by_mixer[mixer])


# Two seeds (initialisation and data) per model, except the Delta LSTM (one: its Python-loop recurrence costs
# ~15× a softmax step here, and a second seed would not fit the hour this study is sized for).
FULL = Study(protocol=Protocol(), runs=runs_for({m: (0,) if m == "delta_lstm" else (0, 1) for m in MIXERS_STUDIED}))

# A supplement: the four cheaper models trained 4× longer (2000 steps, one seed) — does the ranking hold once
# they have learned more? The Delta LSTM would take ~40 min per task at this length and is left out.
LONG = Study(protocol=Protocol(train=dataclasses.replace(TRAIN, steps=2000, eval_every=250)),
             runs=tuple(RunConfig(task, mixer) for task in TASKS for mixer in MIXERS_STUDIED if mixer != "delta_lstm"))

QUICK = Study(
    protocol=Protocol(code_execution=CodeExecution(num_vars=2, seq_len=24),
                      listops=ListOps(depth=2, max_args=3, min_length=8, max_length=16),
                      train=dataclasses.replace(TRAIN, steps=12, batch_size=8, warmup_steps=2, eval_every=6,
                                                eval_batches=1),
                      test_sequences=64, probe_sequences=16),
    runs=tuple(RunConfig(task, mixer, d_model=16, n_heads=2, d_mlp=16, chunk_size=8) for task in TASKS
               for mixer in MIXERS_STUDIED),
)
