"""The one list of mixers: names → mixer classes (and their configs).

    @register
    class MyMemory(Mixer):
        Config = MyMemoryConfig          # a MixerConfig subclass with kind = "my_memory"
        ...

The CLI, the app, the case studies and the checkpoint loader read mixer names from here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:  # pragma: no cover
    from .base import Mixer, MixerConfig

_MIXERS: dict[str, type["Mixer"]] = {}


def register(cls: type["Mixer"]) -> type["Mixer"]:
    """Class decorator: make ``cls`` buildable by its config's ``kind``. Re-registering a name replaces it
    (so a notebook can redefine a mixer); registering a class whose ``Config.kind`` is empty is an error."""
    kind = cls.Config.kind
    if not kind or not isinstance(kind, str):
        raise ValueError(f"{cls.__name__}.Config needs a class attribute kind = '<name>'")
    _MIXERS[kind] = cls
    return cls


def unregister(kind: str) -> None:
    """Remove a mixer (for tests and notebooks that register a temporary one)."""
    _MIXERS.pop(kind, None)


def names(fast_weights: "bool | None" = None) -> list[str]:
    """The registered mixer names, in registration order (the built-in ones first); ``fast_weights``
    True / False keeps only the mixers with / without a fast-weight recurrence."""
    return [k for k, cls in _MIXERS.items() if fast_weights is None or (cls.recurrence is not None) == fast_weights]


def mixer_class(kind: str) -> type["Mixer"]:
    if kind not in _MIXERS:
        raise ValueError(f"unknown mixer {kind!r}; known mixers: {names()}")
    return _MIXERS[kind]


def mixer_config(value: Union[str, dict, "MixerConfig"]) -> "MixerConfig":
    """A mixer config from a name (its defaults), a dict ``{"kind": name, **options}`` or a config."""
    from .base import MixerConfig

    if isinstance(value, MixerConfig):
        mixer_class(value.kind)  # refuse configs of unregistered mixers
        return value
    if isinstance(value, str):
        return mixer_class(value).Config()
    if isinstance(value, dict):
        if "kind" not in value:
            raise ValueError(f"a mixer config needs a 'kind' (one of {names()}), got keys {sorted(value)}")
        cls = mixer_class(value["kind"]).Config
        try:
            return cls.from_dict(value)
        except TypeError as e:
            raise ValueError(f"{cls.__name__}: {e}") from None
    raise ValueError(f"a mixer must be a name {names()}, a dict with 'kind' or a MixerConfig, got {value!r}")


def mixer_fields(kind: str) -> tuple[str, ...]:
    """The option names of a mixer's config."""
    import dataclasses

    return tuple(f.name for f in dataclasses.fields(mixer_class(kind).Config))


def describe(value: Any) -> str:
    """A mixer config's human-readable label."""
    cfg = mixer_config(value)
    return mixer_class(cfg.kind).label(cfg)
