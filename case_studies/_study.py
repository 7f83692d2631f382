"""What every case study's ``Study`` is: a protocol and a tuple of named runs, read from and written to JSON.

    @dataclass(frozen=True)
    class Study(StudyBase):
        PROTOCOL: ClassVar[type] = Protocol
        RUN: ClassVar[type] = RunConfig
        protocol: Protocol
        runs: tuple[RunConfig, ...]

``Protocol`` and ``RunConfig`` need ``to_dict``/``from_dict`` (e.g. ``workbench.dataclass_io.JsonConfig``);
runs need a ``name``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from workbench.dataclass_io import check_keys


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
