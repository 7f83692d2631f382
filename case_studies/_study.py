"""What every case study's ``Study`` is: a protocol and a tuple of named runs, read from and written to JSON.

    @dataclass(frozen=True)
    class Study(StudyBase):
        PROTOCOL: ClassVar[type] = Protocol
        RUN: ClassVar[type] = RunConfig
        protocol: Protocol
        runs: tuple[RunConfig, ...]

``Protocol`` and ``RunConfig`` need ``to_dict``/``from_dict`` (e.g. ``workbench.dataclass_io.JsonConfig``;
a protocol that trains: :class:`ProtocolBase`, which holds a ``TrainConfig``); runs need a ``name``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from workbench.dataclass_io import JsonConfig, check_keys
from workbench.mixers import names
from workbench.training import TrainConfig


def check_model_run(run) -> None:
    """A study's run of one model: its ``mixer`` is a registered mixer and ``d_model`` splits into ``n_heads``."""
    if run.mixer not in names():
        raise ValueError(f"RunConfig.mixer must be one of the mixers {names()}, got {run.mixer!r}")
    if run.d_model % run.n_heads:
        raise ValueError(f"RunConfig.d_model ({run.d_model}) must be divisible by n_heads ({run.n_heads})")


class StudyBase:
    PROTOCOL: ClassVar[type]
    RUN: ClassVar[type]

    def __post_init__(self) -> None:
        if not isinstance(self.protocol, self.PROTOCOL):
            object.__setattr__(self, "protocol", self.PROTOCOL.from_dict(self.protocol))
        object.__setattr__(self, "runs", tuple(r if isinstance(r, self.RUN) else self.RUN.from_dict(r)
                                               for r in self.runs))
        names = [r.name for r in self.runs]
        if not names or len(set(names)) != len(names):
            raise ValueError(f"a {type(self).__name__} needs at least one run and distinct run names, got {names}")

    def to_dict(self) -> dict[str, Any]:
        return {"protocol": self.protocol.to_dict(), "runs": [r.to_dict() for r in self.runs]}

    @classmethod
    def from_dict(cls, data: Any):
        data = check_keys(cls, data)
        return cls(data["protocol"], tuple(data["runs"]))


class ProtocolBase(JsonConfig):
    """A study protocol that trains with a :class:`~workbench.training.TrainConfig` held in its field ``train``
    (its ``seed`` is the study's seed: :attr:`seed`). ``from_dict`` also reads the protocols of
    ``results.json`` files written when the training fields stood flat in the protocol: the keys of
    ``FLAT_TRAIN_KEYS`` found there become ``train``, via :meth:`train_from_flat`."""

    FLAT_TRAIN_KEYS: ClassVar[tuple[str, ...]] = ()

    @property
    def seed(self) -> int:
        return self.train.seed

    def _check_train(self) -> None:
        """For ``__post_init__``: ``train`` as a TrainConfig (a dict is read), with no ``out_dir``."""
        train = self.train if isinstance(self.train, TrainConfig) else TrainConfig.from_dict(self.train)
        if train.out_dir is not None:
            raise ValueError(f"{type(self).__name__}.train.out_dir must be None; the study chooses where runs go")
        object.__setattr__(self, "train", train)

    @classmethod
    def train_from_flat(cls, flat: dict[str, Any]) -> TrainConfig:
        """The ``train`` of an old flat protocol's training keys ``flat``: the protocol's default ``train``
        with those keys (a protocol overrides this where the old format implied more, e.g. ``eval_every``)."""
        return dataclasses.replace(cls.__dataclass_fields__["train"].default, **flat)

    @classmethod
    def from_dict(cls, data: Any):
        if isinstance(data, dict) and "train" not in data and any(k in data for k in cls.FLAT_TRAIN_KEYS):
            data = dict(data)
            data["train"] = cls.train_from_flat({k: data.pop(k) for k in cls.FLAT_TRAIN_KEYS if k in data})
        return cls(**check_keys(cls, data))
