"""The patching sites: where on a (layer, position) cell an activation can be replaced.

Two kinds. TransformerLens' sites (``resid_pre``, ``resid_mid``, ``resid_post``, ``attn_out``, ``mlp_out``, and the
per-head ``z``, ``q``, ``k``, ``v``) are named as ``transformer_lens.patching`` names them and patched by it. The
fast-weight sites are asked of each layer's mixer (``Mixer.patch_sites``): ``state_readout`` and ``state_carry``
(W_t through ``expose_states`` in that mode), ``write`` (what is written at t), ``beta`` and ``decay``. A site is
defined at a layer when its hook exists there; every hook here has ``[batch, pos, head, ...]`` (the residual sites
``[batch, pos, d_model]``), so a head-resolved site patches ``[:, pos, head]``.
"""

from __future__ import annotations

from typing import Optional, Sequence

from transformer_lens.utilities import get_act_name

TL_SITES = {"resid_pre": False, "resid_mid": False, "resid_post": False, "attn_out": False, "mlp_out": False,
            "z": True, "q": True, "k": True, "v": True}  # site -> head-resolved
STATE_SITES = {"state_readout": "readout", "state_carry": "carry"}  # site -> expose_states mode
MIXER_SITES = ("write", "beta", "decay")  # roles of Mixer.patch_sites
SITES = (*TL_SITES, *STATE_SITES, *MIXER_SITES)
DEFAULT_SITES = ("resid_pre", "attn_out", "mlp_out", "z", "state_readout", "state_carry", "write", "beta", "decay")


def head_resolved(site: str) -> bool:
    """Whether ``site`` has a head axis (a per-head breakdown applies)."""
    return TL_SITES.get(site, True)


def check_site(site: str) -> str:
    if site not in SITES:
        raise ValueError(f"unknown patching site {site!r}; the sites are {list(SITES)}")
    return site


def site_hook(model, site: str, layer: int) -> Optional[str]:
    """The full hook name of ``site`` at ``layer``, or None where that layer has no such site."""
    check_site(site)
    if site in TL_SITES:
        name = get_act_name(site, layer)
        return name if name in model.hook_dict else None
    block = model.blocks[layer]
    if not block.has_mixer:
        return None
    hook = block.attn.patch_sites().get("state" if site in STATE_SITES else site)
    return None if hook is None else f"blocks.{layer}.attn.{hook}"


def available_sites(model, sites: Optional[Sequence[str]] = None) -> list[str]:
    """The sites (of ``sites``, default all) that exist at some layer of ``model``, in the order of :data:`SITES`."""
    wanted = SITES if sites is None else [check_site(s) for s in sites]
    return [s for s in SITES if s in wanted and any(site_hook(model, s, i) for i in range(model.cfg.n_layers))]
