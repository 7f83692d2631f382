"""K-FAC curvature of linear layers and the memorization edit of Merullo et al. (2025).

``sites``: which linear layers (and the hooks holding their exact inputs/outputs);
``capture``: per-token inputs and output gradients (sampled or gold labels);
``stats``: :class:`KFACFactors` (A = E[a aᵀ], G = E[g gᵀ]), streaming and mergeable, and
:func:`collect_kfac`; ``distributed``: all-reduce under torch.distributed.
"""

from .capture import capture_linear, fisher_loss, sample_labels
from .sites import KINDS, LinearSite, flat_weight, linear_sites, resolve_sites, unflatten_weight
from .stats import KFACConfig, KFACFactors, batch_generator, collect_kfac

__all__ = ["KINDS", "KFACConfig", "KFACFactors", "LinearSite", "batch_generator", "capture_linear", "collect_kfac",
           "fisher_loss", "flat_weight", "linear_sites", "resolve_sites", "sample_labels", "unflatten_weight"]
