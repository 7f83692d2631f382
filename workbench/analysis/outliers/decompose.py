"""Who writes an outlier dimension: the residual stream along neuron j as a sum of direct writes.

The residual stream is a sum of what each component adds to it, so for one neuron j

  resid_post[i]_j = embed_j + pos_embed_j + Σ_{l ≤ i} (Σ_h head_{l,h,j} + b_O[l]_j + mlp_out[l]_j)

exactly, with head_{l,h} the h-th head's share of the mixer output, as the mixer maps its read-out
``hook_z`` to the residual (``Mixer.head_outputs``: z · W_O[l, h, :, j], after the per-head output norm
and gate for the delta mixers), and b_O its ``output_bias``. A mixer that adds something else to its
output (the Fast Weight Memory's residual LSTM state) gets one more component per layer, ``attn_other``:
the mixer output less its heads and bias. ``resid_pre[i]`` stops before block i, ``resid_mid[i]`` after
block i's mixer.
In the Outlier Protected block the branches carry their weight β, and the blocks start from the
normalised embedding LN(embed + pos_embed), which is one component (``input_norm``) instead of two.
"""

from __future__ import annotations

import pandas as pd
import torch

SITES = ("resid_pre", "resid_mid", "resid_post")


@torch.no_grad()
def decompose_residual(model, tokens, neuron: int, layer: int = -1, site: str = "resid_post") -> pd.DataFrame:
    """Direct contributions to the residual stream ``blocks.{layer}.hook_{site}`` along ``neuron``.

    Returns a long DataFrame ``component, kind, layer, head, batch, pos, value`` with kinds ``embed``,
    ``pos_embed`` (or ``input_norm`` in the Outlier Protected block), ``head`` (one row set per head),
    ``attn_bias`` and ``mlp``; summing ``value`` over the components of a (batch, pos) gives the residual
    stream's value there. The model is not changed.
    """
    cfg = model.cfg
    tokens = model.check_tokens(tokens)
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")
    if not isinstance(layer, int) or isinstance(layer, bool) or not -cfg.n_layers <= layer < cfg.n_layers:
        raise ValueError(f"layer must be an int in [0, {cfg.n_layers - 1}] (or negative from the end), got {layer!r}")
    if not isinstance(neuron, int) or isinstance(neuron, bool) or not 0 <= neuron < cfg.d_model:
        raise ValueError(f"neuron must be an int in [0, {cfg.d_model - 1}] (a residual-stream dimension), "
                         f"got {neuron!r}")
    layer %= cfg.n_layers
    if site == "resid_mid" and not (cfg.has_mixer(layer) and cfg.has_mlp(layer)):
        raise ValueError(f"block {layer} is {cfg.block_kind(layer)!r}-only: it has no resid_mid (that needs a mixer "
                         "and an MLP); use site='resid_pre' or 'resid_post'")
    last_attn = layer if site != "resid_pre" else layer - 1
    last_mlp = layer if site == "resid_post" else layer - 1
    parts: dict[tuple[str, int, int], torch.Tensor] = {}  # (kind, layer, head) → [batch, pos]
    mixer_input: dict[int, torch.Tensor] = {}

    def take(kind, i=-1):
        def hook(act, hook):
            parts[(kind, i, -1)] = act[..., neuron].double()
        return hook

    def keep_input(i):
        def pre_hook(module, args):
            mixer_input[i] = args[0]
        return pre_hook

    def heads(i):
        attn = model.blocks[i].attn
        scale = model.blocks[i].branch_scale

        def hook(z, hook):  # [batch, pos, head, d_v]
            per_head = attn.head_outputs(z, mixer_input[i])[..., neuron].double() * scale  # [batch, pos, head]
            for h in range(per_head.shape[-1]):  # the layer's own head count (a hybrid's layers may differ)
                parts[("head", i, h)] = per_head[..., h]
            bias = attn.output_bias()
            if bias is not None:
                parts[("attn_bias", i, -1)] = (bias[neuron].double() * scale).expand(per_head.shape[:2])
        return hook

    def rest(i):  # what the mixer adds beside its heads and its bias (nothing, for most mixers)
        def hook(out, hook):  # [batch, pos, d_model]: the branch added to the residual
            other = out[..., neuron].double() - sum(v for (k, l, _), v in parts.items()
                                                    if l == i and k in ("head", "attn_bias"))
            if float(other.abs().max()) > 1e-6 * max(float(out[..., neuron].double().abs().max()), 1.0):
                parts[("attn_other", i, -1)] = other
        return hook

    if "ln_input.hook_normalized" in model.hook_dict:  # Outlier Protected block: the blocks start from LN(x)
        fwd_hooks = [("ln_input.hook_normalized", take("input_norm"))]
    else:
        fwd_hooks = [("hook_embed", take("embed"))]
        if cfg.positional == "learned":
            fwd_hooks.append(("hook_pos_embed", take("pos_embed")))
    handles = []
    try:
        for i in range(last_attn + 1):
            if not cfg.has_mixer(i):  # an MLP-only block (cfg.block_kinds)
                continue
            handles.append(model.blocks[i].attn.register_forward_pre_hook(keep_input(i)))
            fwd_hooks.append((f"blocks.{i}.attn.hook_z", heads(i)))
            fwd_hooks.append((f"blocks.{i}.hook_attn_out", rest(i)))
        for i in range(last_mlp + 1):
            if cfg.has_mlp(i):
                fwd_hooks.append((f"blocks.{i}.hook_mlp_out", take("mlp", i)))
        model.run_with_hooks(tokens, return_type=None, stop_at_layer=layer + 1, fwd_hooks=fwd_hooks)
    finally:
        for handle in handles:
            handle.remove()
    b, p = tokens.shape
    frames = []
    for (kind, i, h), value in parts.items():
        name = {"embed": "embed", "pos_embed": "pos_embed", "input_norm": "normalised embedding",
                "head": f"L{i}H{h}", "attn_bias": f"L{i} attn bias", "attn_other": f"L{i} attn other",
                "mlp": f"L{i} mlp"}[kind]
        frames.append(pd.DataFrame({"component": name, "kind": kind, "layer": i, "head": h,
                                    "batch": torch.arange(b).repeat_interleave(p).tolist(),
                                    "pos": torch.arange(p).repeat(b).tolist(),
                                    "value": value.reshape(-1).tolist()}))
    return pd.concat(frames, ignore_index=True)


def contribution_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per component of :func:`decompose_residual`'s output, in the order of the residual stream: ``mean``
    and ``mean_abs`` over tokens, and ``share_abs`` = mean_abs / Σ over components of mean_abs."""
    g = df.groupby(["component", "kind", "layer", "head"], sort=False).value
    out = pd.DataFrame({"mean": g.mean(), "mean_abs": g.apply(lambda v: v.abs().mean())}).reset_index()
    out["share_abs"] = out["mean_abs"] / out["mean_abs"].sum()
    return out
