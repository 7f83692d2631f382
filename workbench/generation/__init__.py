"""Generation with a recurrent state: ``generate`` (the loop, TransformerLens' signature) and
``sample_logits`` (greedy / temperature / top-k / top-p). ``HookedFastWeightLM.generate`` calls them."""

from .generate import generate, step_unsupported
from .sampling import sample_logits

__all__ = ["generate", "sample_logits", "step_unsupported"]
