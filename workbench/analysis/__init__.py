"""Analyses: pure functions from a model and tokens (or cached tensors) to tensors and DataFrames."""

from .editing import edit_association, patch_fast_weights, rank_one_edit
from .effective_attention import effective_attention
from .fast_weights import fast_weights
from .head_scores import induction_score, previous_token_score, retrieval_score
from .recall_probe import aggregate, probe_associations, retrieve
from .layer_inputs import RecurrenceInputs, recurrence_inputs
from .patching import (activation_patching, attribution_agreement, attribution_patching, head_breakdown,
                       logit_diff)

__all__ = ["aggregate", "probe_associations", "retrieve", "edit_association", "patch_fast_weights", "rank_one_edit", "effective_attention", "fast_weights", "induction_score", "previous_token_score", "retrieval_score", "RecurrenceInputs",
           "recurrence_inputs",
           "activation_patching", "attribution_agreement", "attribution_patching", "head_breakdown", "logit_diff"]
