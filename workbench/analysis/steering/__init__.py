"""Steering (issue 15, item 4): contrastive activation addition on the residual stream, and the fast-weight
version — a direction or a rank-one write added to the state W_t at chosen positions, in ``readout`` or
``carry`` mode — with a sweep of strength against a metric and against held-out perplexity; the two applied
together in one forward, and a state strength matched in effect to a residual vector (``combined``).

Every steering is a context manager over the model's hooks; the model is never changed.
"""

from .combined import combined_steering, matched_state_strength, state_steering_change
from .heldout import heldout_text
from .residual import SITES, caa_vector, residual_activations, residual_steering, unembedding_direction
from .state import contrastive_state_direction, state_steering
from .sweep import steering_sweep

__all__ = ["SITES", "caa_vector", "combined_steering", "contrastive_state_direction", "heldout_text",
           "matched_state_strength", "residual_activations", "residual_steering", "state_steering",
           "state_steering_change", "steering_sweep", "unembedding_direction"]
