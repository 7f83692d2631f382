"""Activation patching and attribution patching on every mixer, including the fast-weight sites."""

from .activation import activation_patching, head_breakdown, patch_hook, patch_state
from .metrics import as_metric, logit_diff
from .sites import DEFAULT_SITES, SITES, available_sites, head_resolved, site_hook

__all__ = ["activation_patching", "head_breakdown", "patch_hook", "patch_state", "as_metric", "logit_diff",
           "DEFAULT_SITES", "SITES", "available_sites", "head_resolved", "site_hook"]
from .attribution import attribution_agreement, attribution_patching  # noqa: E402

__all__ += ["attribution_agreement", "attribution_patching"]
