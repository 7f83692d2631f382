"""The strict config reading every config dataclass shares (workbench/dataclass_io.py)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from workbench.dataclass_io import JsonConfig, check_int_fields, check_keys


@dataclass(frozen=True)
class _Cfg(JsonConfig):
    steps: int = 3
    seed: int = 0
    name: str = "x"

    def __post_init__(self) -> None:
        check_int_fields(self, ("steps",))
        check_int_fields(self, ("seed",), minimum=0)


def test_round_trip_through_json():
    cfg = _Cfg(steps=5, seed=2, name="y")
    assert _Cfg.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_unknown_keys_and_non_objects_are_refused_by_name():
    with pytest.raises(ValueError, match=r"unknown _Cfg keys \['stpes'\]; known keys are \['name', 'seed', 'steps'\]"):
        _Cfg.from_dict({"stpes": 4})
    with pytest.raises(ValueError, match="a _Cfg must be a JSON object, got list"):
        check_keys(_Cfg, [1, 2])


@pytest.mark.parametrize("kwargs, msg", [
    ({"steps": 0}, r"_Cfg.steps must be a positive int, got 0"),
    ({"steps": 2.0}, r"_Cfg.steps must be a positive int, got 2.0"),
    ({"steps": True}, r"_Cfg.steps must be a positive int, got True"),
    ({"seed": -1}, r"_Cfg.seed must be a non-negative int, got -1"),
])
def test_int_fields_are_checked_with_the_class_and_field_named(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        _Cfg(**kwargs)
    assert _Cfg(seed=0).seed == 0
