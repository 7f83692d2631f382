"""K-FAC curvature of linear layers and the memorization edit of Merullo et al. (2025).

``sites``: which linear layers (and the hooks holding their exact inputs/outputs);
``capture``: per-token inputs and output gradients (sampled or gold labels);
``stats``: :class:`KFACFactors` (A = E[a aᵀ], G = E[g gᵀ]), streaming and mergeable, and
:func:`collect_kfac`; ``distributed``: all-reduce under torch.distributed;
``edit``: the curvature edit (:func:`kfac_edit`); ``svd``: the SVD-truncation baseline (:func:`svd_edit`); ``controls``: a random basis of equal
rank (:func:`random_subspace_edit`) and whole-MLP ablation (:func:`ablate_mlp`);
``balanced_subnet``: the supervised pruning baseline of Sakarvadia et al. (:func:`balanced_subnet_edit`).
"""

from .balanced_subnet import BalancedSubnetConfig, balanced_subnet_edit
from .capture import capture_linear, fisher_loss, sample_labels
from .controls import ablate_mlp, random_subspace_edit
from .edit import check_rho, curvature_mask, curvature_spectrum, kfac_edit, kfac_project
from .sites import KINDS, LinearSite, flat_weight, linear_sites, resolve_sites, unflatten_weight
from .stats import KFACConfig, KFACFactors, batch_generator, collect_kfac
from .svd import svd_edit, svd_truncate

__all__ = ["KINDS", "BalancedSubnetConfig", "ablate_mlp", "balanced_subnet_edit", "random_subspace_edit", "KFACConfig", "KFACFactors", "LinearSite", "batch_generator", "capture_linear", "collect_kfac",
           "check_rho", "curvature_mask", "curvature_spectrum", "fisher_loss", "flat_weight", "kfac_edit", "kfac_project",
           "linear_sites", "resolve_sites", "sample_labels", "svd_edit", "svd_truncate", "unflatten_weight"]
