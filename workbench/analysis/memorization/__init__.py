"""Memorization metrics: verbatim recitation (strict / loose / normalised distance) by repetition count,
prefix length and prefix offset; held-out perplexity; top-k next-token agreement between two models."""

from .distance import token_levenshtein
from .perplexity import held_out_perplexity, topk_agreement
from .recitation import (LOOSE_THRESHOLD, greedy_continue, probe_windows, recitation_scores, recitation_table,
                         summarize)
from .suffix_loss import suffix_nll

__all__ = ["LOOSE_THRESHOLD", "greedy_continue", "held_out_perplexity", "probe_windows", "recitation_scores",
           "recitation_table", "suffix_nll", "summarize", "token_levenshtein", "topk_agreement"]
