"""Model components other than the mixers (:mod:`workbench.mixers`), one concept per file."""

from .block import TransformerBlock

__all__ = ["TransformerBlock"]
