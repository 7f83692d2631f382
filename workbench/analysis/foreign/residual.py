"""Who writes an outlier dimension of a model we did not write: direct decomposition through nnsight.

A pre-norm decoder adds each component's output to the residual stream, so for one dimension j

  resid_pre[L]_j  = Σ_e embedding_e_j + Σ_{l < L} (attn[l]_j + mlp[l]_j)
  resid_mid[L]_j  = resid_pre[L]_j + attn[L]_j,      resid_post[L]_j = resid_mid[L]_j + mlp[L]_j

and the attention block's output is its output projection applied to the heads' concatenated outputs
z = [z_1, …, z_H] (``[batch, pos, head·d_head]``, head-major), so with W the projection as a
``[head·d_head, d_model]`` matrix and b its bias

  attn[l]_j = Σ_h z_h · W[h·d_head:(h+1)·d_head, j] + b_j        (one term per head, plus the bias).

Everything is read from nnsight-saved module inputs and outputs (the embedding modules' outputs, the
output projection's input, the MLP's output); no hook of ours is involved. A :class:`ResidualLayout`
names those modules. The contributions are summed in float64 and compared with the residual stream the
model itself computed (a block's input or output, or the input of the norm between mixer and MLP); a
mismatch means the layout does not describe the model (or dropout is active) and raises ValueError.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pandas as pd
import torch

from ..outliers.decompose import SITES
from ..module_paths import module_at


@dataclass(frozen=True)
class ResidualLayout:
    """Where a pre-norm decoder's residual writes are, as module paths.

    embeddings: ``{component name: module path}`` of the modules whose outputs sum to the stream entering
        block 0, in the order the model runs them (e.g. ``{"embed": "transformer.wte", "pos_embed":
        "transformer.wpe"}``).
    blocks: path of the block list; block i is ``f"{blocks}.{i}"``; its first input is resid_pre and its
        output (first element if a tuple) resid_post.
    attn_out: ``{path inside a block: n_heads}`` of the attention output projection (``nn.Linear`` or
        transformers' ``Conv1D``); the first path that exists in a block is used, so hybrid models list
        one per mixer kind. Its input must be the heads' outputs concatenated head-major.
    mlp: path inside a block of the MLP (its output is added to the stream).
    mid_norm: path inside a block of the norm between mixer and MLP (its input is resid_mid).
    """

    embeddings: Mapping[str, str]
    blocks: str
    attn_out: Mapping[str, int]
    mlp: str
    mid_norm: str
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        if not self.embeddings or not self.attn_out:
            raise ValueError("a ResidualLayout needs at least one embedding and one attention output path")
        for path, h in self.attn_out.items():
            if not isinstance(h, int) or isinstance(h, bool) or h < 1:
                raise ValueError(f"attn_out[{path!r}] must be a positive number of heads, got {h!r}")


def _root(model) -> torch.nn.Module:
    return getattr(model, "_module", model)  # the torch module inside an nnsight wrapper


def gpt2_layout(model) -> ResidualLayout:
    """The layout of a transformers ``GPT2Model`` / ``GPT2LMHeadModel``."""
    root = _root(model)
    prefix = "transformer." if hasattr(root, "transformer") else ""
    return ResidualLayout(embeddings={"embed": f"{prefix}wte", "pos_embed": f"{prefix}wpe"}, blocks=f"{prefix}h",
                          attn_out={"attn.c_proj": root.config.n_head}, mlp="mlp", mid_norm="ln_2", name="gpt2")


def llama_style_layout(model) -> ResidualLayout:
    """The layout of Llama-style transformers decoders (``model.embed_tokens``, ``model.layers.{i}`` with
    ``self_attn.o_proj``, ``mlp`` and ``post_attention_layernorm``): Llama, Qwen2/3, and Qwen3-Next, whose
    Gated DeltaNet layers write through ``linear_attn.out_proj`` (one head per value head)."""
    root = _root(model)
    cfg = root.config
    attn_out = {"self_attn.o_proj": cfg.num_attention_heads}
    if getattr(cfg, "linear_num_value_heads", None):
        attn_out["linear_attn.out_proj"] = cfg.linear_num_value_heads
    prefix = "model." if hasattr(root, "model") else ""
    return ResidualLayout(embeddings={"embed": f"{prefix}embed_tokens"}, blocks=f"{prefix}layers", attn_out=attn_out,
                          mlp="mlp", mid_norm="post_attention_layernorm", name="llama_style")


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


def _projection_matrix(proj: torch.nn.Module, path: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(W ``[d_in, d_out]``, b ``[d_out]`` or None) of a linear output projection, in float64."""
    if isinstance(proj, torch.nn.Linear):
        W = proj.weight.T
    elif type(proj).__name__ == "Conv1D" and hasattr(proj, "nf"):  # transformers' GPT-2 Conv1D: x @ W + b
        W = proj.weight
    else:
        raise ValueError(f"{path} is a {type(proj).__name__}; the attention output projection must be an nn.Linear "
                         "or a transformers Conv1D")
    b = getattr(proj, "bias", None)
    return W.detach().double(), None if b is None else b.detach().double()


@torch.no_grad()
def decompose_residual_nnsight(model, input_ids: torch.Tensor, neuron: int, layer: int = -1,
                               site: str = "resid_post", layout: ResidualLayout | None = None) -> pd.DataFrame:
    """Direct contributions to the residual stream at ``site`` of block ``layer`` along dimension ``neuron``.

    ``model``: a transformers decoder (or its ``nnsight.NNsight`` wrapper) in eval mode; ``input_ids``:
    ``[batch, pos]``; ``layout``: where its residual writes are (default: :func:`gpt2_layout` for GPT-2,
    :func:`llama_style_layout` otherwise). Returns the long DataFrame of
    :func:`workbench.analysis.outliers.decompose_residual` — ``component, kind, layer, head, batch, pos,
    value`` with kinds named after ``layout.embeddings``, ``head`` (components ``L{l}H{h}``), ``attn_bias``
    (only if the projection has a bias) and ``mlp`` — so :func:`~..outliers.contribution_summary` applies.
    The sum over components equals the model's own residual stream (checked; ValueError otherwise).
    """
    try:
        import nnsight
    except ImportError:
        raise ImportError("decompose_residual_nnsight needs nnsight: pip install nnsight") from None
    if site not in SITES:
        raise ValueError(f"site must be one of {SITES}, got {site!r}")
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
        raise ValueError("input_ids must be an integer tensor [batch, pos]")
    wrapped = model if isinstance(model, nnsight.NNsight) else nnsight.NNsight(model)
    root = _root(wrapped)
    if layout is None:
        layout = gpt2_layout(root) if getattr(root.config, "model_type", "") == "gpt2" else llama_style_layout(root)
    n_layers = len(module_at(root, layout.blocks))
    if not isinstance(layer, int) or isinstance(layer, bool) or not -n_layers <= layer < n_layers:
        raise ValueError(f"layer must be an int in [0, {n_layers - 1}] (or negative from the end), got {layer!r}")
    layer %= n_layers
    d_model = module_at(root, next(iter(layout.embeddings.values()))).weight.shape[-1]
    if not isinstance(neuron, int) or isinstance(neuron, bool) or not 0 <= neuron < d_model:
        raise ValueError(f"neuron must be an int in [0, {d_model - 1}] (a residual-stream dimension), got {neuron!r}")
    last_attn = layer if site != "resid_pre" else layer - 1
    last_mlp = layer if site == "resid_post" else layer - 1

    projections = []  # (path, n_heads) of block i's attention output projection
    for i in range(last_attn + 1):
        block = module_at(root, f"{layout.blocks}.{i}")
        found = [(p, h) for p, h in layout.attn_out.items() if _has(block, p)]
        if not found:
            raise ValueError(f"block {i} has none of the attention output projections {list(layout.attn_out)}")
        projections.append(found[0])

    saved: dict = {}
    try:
        with wrapped.trace(input_ids):
            for name, path in layout.embeddings.items():
                saved[("embed", name)] = module_at(wrapped, path).output.save()
            for i in range(layer + 1):
                block = f"{layout.blocks}.{i}"
                if i == layer and site == "resid_pre":
                    saved["resid"] = module_at(wrapped, block).input.save()
                    break
                saved[("attn", i)] = module_at(wrapped, f"{block}.{projections[i][0]}").input.save()
                if i == layer and site == "resid_mid":
                    saved["resid"] = module_at(wrapped, f"{block}.{layout.mid_norm}").input.save()
                    break
                saved[("mlp", i)] = module_at(wrapped, f"{block}.{layout.mlp}").output.save()
                if i == layer:
                    saved["resid"] = module_at(wrapped, block).output.save()
    except Exception as e:
        if type(e).__name__ == "OutOfOrderError":
            raise ValueError(f"layout.embeddings must be listed in the order the model runs them ({e})") from None
        raise

    b, p = input_ids.shape
    parts: dict[tuple[str, str, int, int], torch.Tensor] = {}  # (component, kind, layer, head) → [batch, pos]
    for name in layout.embeddings:
        parts[(name, name, -1, -1)] = _first(saved[("embed", name)])[..., neuron].double().expand(b, p)
    for i in range(last_attn + 1):  # in the order of the residual stream: block i's heads, then its MLP
        path, n_heads = projections[i]
        W, bias = _projection_matrix(module_at(root, f"{layout.blocks}.{i}.{path}"), path)
        z = _first(saved[("attn", i)]).double()  # [batch, pos, head·d_head]
        if z.shape[-1] % n_heads:
            raise ValueError(f"block {i}: {path} reads {z.shape[-1]} channels, not divisible by {n_heads} heads")
        per_head = torch.einsum("bphd,hd->bph", z.reshape(b, p, n_heads, -1), W[:, neuron].reshape(n_heads, -1))
        for h in range(n_heads):
            parts[(f"L{i}H{h}", "head", i, h)] = per_head[..., h]
        if bias is not None:
            parts[(f"L{i} attn bias", "attn_bias", i, -1)] = bias[neuron].expand(b, p)
        if i <= last_mlp:
            parts[(f"L{i} mlp", "mlp", i, -1)] = _first(saved[("mlp", i)])[..., neuron].double()

    resid = _first(saved["resid"])[..., neuron].double()
    stack = torch.stack(list(parts.values()))
    # float rounding of the model's own sums: a few ulps of the summed magnitudes per token
    tol = 64 * torch.finfo(_first(saved["resid"]).dtype).eps * stack.abs().sum(0) + 1e-12
    err = (stack.sum(0) - resid).abs()
    if (err > tol).any():
        raise ValueError(f"the components do not sum to the residual stream (max error {err.max():.3g}, tolerance "
                         f"{tol.max():.3g}): the layout {layout.name!r} does not describe this model, or dropout is "
                         "active (call model.eval())")
    frames = []
    for (name, kind, i, h), value in parts.items():
        frames.append(pd.DataFrame({"component": name, "kind": kind, "layer": i, "head": h,
                                    "batch": torch.arange(b).repeat_interleave(p).tolist(),
                                    "pos": torch.arange(p).repeat(b).tolist(),
                                    "value": value.reshape(-1).tolist()}))
    return pd.concat(frames, ignore_index=True)


def _has(module: torch.nn.Module, path: str) -> bool:
    try:
        module_at(module, path)
    except ValueError:
        return False
    return True
