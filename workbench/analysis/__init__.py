"""Analyses: pure functions from a model and tokens (or cached tensors) to tensors and DataFrames."""

from .editing import edit_association, patch_fast_weights, rank_one_edit
from .effective_attention import effective_attention
from .fast_weights import fast_weights
from .head_scores import induction_score, previous_token_score, retrieval_score
from .recall_probe import aggregate, probe_associations, retrieve
from .layer_inputs import RecurrenceInputs, recurrence_inputs
__all__ = ["aggregate", "probe_associations", "retrieve", "edit_association", "patch_fast_weights", "rank_one_edit", "effective_attention", "fast_weights", "induction_score", "previous_token_score", "retrieval_score", "RecurrenceInputs",
           "recurrence_inputs"]

# path knockout and steering (issue 15, items 3 and 4)
from .knockout import final_token_logprob, knock_out, knocked_readout, knockout_effects, logit_difference
from .steering import (caa_vector, combined_steering, contrastive_state_direction, heldout_text,
                       matched_state_strength, residual_steering, state_steering, state_steering_change,
                       steering_sweep, unembedding_direction)
__all__ += ["final_token_logprob", "knock_out", "knocked_readout", "knockout_effects", "logit_difference",
            "caa_vector", "combined_steering", "contrastive_state_direction", "heldout_text",
            "matched_state_strength", "residual_steering", "state_steering", "state_steering_change",
            "steering_sweep", "unembedding_direction"]

# dictionaries of state writes and sparse autoencoders (issue 15, item 5)
from .dictionaries import (SAEConfig, SparseAutoencoder, WriteSAE, WriteSAEConfig, atom_usage, cache_activations,
                           collect_writes, install_write, load_dictionary, reconstruction_metrics, save_dictionary,
                           spliced_loss, state_writes, substitution_test, train_sae, train_write_sae, win_rate,
                           write_reconstruction_metrics)
__all__ += ["SAEConfig", "SparseAutoencoder", "WriteSAE", "WriteSAEConfig", "atom_usage", "cache_activations",
            "collect_writes", "install_write", "load_dictionary", "reconstruction_metrics", "save_dictionary",
            "spliced_loss", "state_writes", "substitution_test", "train_sae", "train_write_sae", "win_rate",
            "write_reconstruction_metrics"]

# lenses (issue 15, item 1)
from .lenses import (LensTrainConfig, TunedLens, TunedLensConfig, kl_to_final, lens_table, logit_lens,
                     residual_stream, train_tuned_lens, tuned_lens)
__all__ += ["LensTrainConfig", "TunedLens", "TunedLensConfig", "kl_to_final", "lens_table", "logit_lens",
            "residual_stream", "train_tuned_lens", "tuned_lens"]

# activation and attribution patching (issue 15, item 2)
from .patching import (activation_patching, attribution_agreement, attribution_patching, head_breakdown,
                       logit_diff)
__all__ += ["activation_patching", "attribution_agreement", "attribution_patching", "head_breakdown", "logit_diff"]
