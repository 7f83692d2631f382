"""What enters a layer's recurrence, read from the model's own hooks (so active patches apply).

The mixer says which hooks hold its recurrence's inputs and how to rebuild them
(``Mixer.input_hooks`` / ``Mixer.recurrence_inputs``); these are the pure-function spellings.
"""

from __future__ import annotations

from ..mixers import Mixer, RecurrenceInputs

__all__ = ["RecurrenceInputs", "check_layer", "fast_weight_mixer", "recurrence_inputs"]


def check_layer(model, layer: int) -> None:
    model.mixer(layer)


def fast_weight_mixer(model, layer: int) -> Mixer:
    """The layer's mixer, or a ValueError that says which layers keep a fast-weight memory."""
    return model.fast_weight_mixer(layer)


def recurrence_inputs(model, tokens, layer: int) -> RecurrenceInputs:
    """Run the model up to ``layer`` and collect what its recurrence consumes (no grad)."""
    return model.recurrence_inputs(tokens, layer)
