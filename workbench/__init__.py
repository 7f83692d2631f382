"""Fast-weight interpretability workbench: hooked fast-weight language models and their analysis."""

from .config import ModelConfig
from .model import HookedFastWeightLM, lm_loss

__all__ = ["ModelConfig", "HookedFastWeightLM", "lm_loss"]
