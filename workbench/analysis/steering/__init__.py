"""Steering (issue 15, item 4): contrastive activation addition on the residual stream, and the fast-weight
version — a direction or a rank-one write added to the state W_t at chosen positions, in ``readout`` or
``carry`` mode — with a sweep of strength against a metric and against held-out perplexity.

Every steering is a context manager over the model's hooks; the model is never changed.
"""

from .heldout import heldout_text
from .residual import SITES, caa_vector, residual_activations, residual_steering, unembedding_direction
from .state import contrastive_state_direction, state_steering
from .sweep import steering_sweep

__all__ = ["SITES", "caa_vector", "contrastive_state_direction", "heldout_text", "residual_activations",
           "residual_steering", "state_steering", "steering_sweep", "unembedding_direction"]
