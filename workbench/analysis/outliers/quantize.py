"""Post-training W8A8 quantisation: int8 weights and int8 activations at every matmul, simulated in float.

He et al. (2024) measure how much outlier features cost at int8: OPT-125m trained with the Outlier
Protected block and SOAP goes from perplexity 14.71 to 14.87 under W8A8, pre-norm with Adam from 16.00 to
63.4. :func:`quantize_w8a8` does the same to a ``HookedFastWeightLM``:

  symmetric int8:   q(x; s) = s · clamp(round(x / s), −127, 127),   s = max|x| / 127   (s = 1 if x ≡ 0)

- weights: per output channel — every matmul weight (``W_Q W_K W_V W_G W_O W_β W_a W_in W_gate W_out
  W_U``) gets one scale per output channel, the max over its input axes. Embedding and position tables
  (lookups, not matmuls), biases, norm gains, the short-convolution kernels and the decay parameters stay
  in float.
- activations: dynamic, at the input of each of those matmuls — the mixer's input (q/k/v/β/decay/gate
  projections), what ``W_O`` reads (``hook_z``; delta mixers ``hook_o_in``), the MLP's input, what
  ``W_out`` reads (``mlp.hook_post``) and the unembedding's input. ``activations="per_tensor"`` (the
  default, as He et al.) uses one scale for the whole input tensor of the call — one outlier channel
  then sets the step for every other channel; ``"per_token"`` one scale per position (over all its
  channels, and heads for ``hook_z``/``hook_o_in``).

Every value is rounded to the int8 grid and kept in float32 ("fake quantisation"): the result equals an
int8 matmul with int32 accumulation up to float rounding. The returned model is a new one (the input is
untouched); activation rounding is done by torch forward hooks registered on the new model's modules,
which ``reset_hooks`` does not remove and which ``save`` does not store (a saved copy holds the int8-grid
weights only). ``hook_z``/``hook_o_in``/``mlp.hook_post`` show the rounded values (what the matmul reads).
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Literal

import torch
from torch import nn

QMAX = 127  # int8
Granularity = Literal["per_tensor", "per_token"]
GRANULARITIES = ("per_tensor", "per_token")

# matmul weight name → the axes that are its input (reduced over for the per-output-channel scale)
INPUT_AXES = {
    "W_Q": (1,), "W_K": (1,), "W_V": (1,), "W_G": (1,),  # [head, d_model, d_head]
    "W_O": (0, 1),  # [head, d_head, d_model]
    "W_beta": (0,), "W_a": (0,), "W_in": (0,), "W_gate": (0,), "W_out": (0,), "W_U": (0,),  # [in, out]
}


def qmax(bits: int) -> int:
    """Largest level of symmetric signed ``bits``-bit quantisation, 2^(bits−1) − 1 (127 for int8)."""
    if not isinstance(bits, int) or isinstance(bits, bool) or not 2 <= bits <= 16:
        raise ValueError(f"bits must be an int in [2, 16], got {bits!r}")
    return 2 ** (bits - 1) - 1


def int8_scale(amax: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """s = amax / 127 (amax / qmax(bits)), with s = 1 where amax = 0 (so an all-zero slice stays zero)."""
    return torch.where(amax > 0, amax / qmax(bits), torch.ones_like(amax))


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, bits: int = 8) -> torch.Tensor:
    """s · clamp(round(x / s), −127, 127) with ``scale`` broadcastable to ``x`` (±qmax(bits) in general)."""
    q = qmax(bits)
    return (x / scale).round().clamp(-q, q) * scale


def quantize_weight(W: torch.Tensor, input_axes: tuple[int, ...]) -> torch.Tensor:
    """Symmetric int8 per output channel: one scale per index of the axes not in ``input_axes``.

    Error bound: |q(W) − W| ≤ s/2 elementwise, s = max over the channel's inputs of |W| / 127; a channel
    whose entries are integer multiples n·s with max |n| = 127 is returned unchanged."""
    if not input_axes or any(not -W.dim() <= a < W.dim() for a in input_axes):
        raise ValueError(f"input_axes {input_axes} do not fit a weight of shape {tuple(W.shape)}")
    scale = int8_scale(W.detach().abs().amax(dim=input_axes, keepdim=True))
    return fake_quantize(W, scale)


def quantize_activation(x: torch.Tensor, granularity: Granularity = "per_tensor", bits: int = 8) -> torch.Tensor:
    """Dynamic symmetric int8 (or ``bits``-bit) of ``x: [batch, pos, ...]``: one scale for the whole tensor
    (``per_tensor``) or one per (batch, pos) over all remaining axes (``per_token``)."""
    if granularity == "per_tensor":
        return fake_quantize(x, int8_scale(x.detach().abs().amax(), bits), bits)
    if granularity == "per_token":
        if x.dim() < 3:
            raise ValueError(f"per_token quantisation needs [batch, pos, ...], got shape {tuple(x.shape)}")
        amax = x.detach().abs().flatten(2).amax(-1)  # [batch, pos]
        return fake_quantize(x, int8_scale(amax, bits).reshape(*amax.shape, *([1] * (x.dim() - 2))), bits)
    raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


def _quantize_input(module: nn.Module, args: tuple, granularity: str, bits: int) -> tuple:
    return (quantize_activation(args[0], granularity, bits), *args[1:])


def _quantize_output(module: nn.Module, args: tuple, output: torch.Tensor, granularity: str, bits: int
                     ) -> torch.Tensor:
    return quantize_activation(output, granularity, bits)


def activation_sites(model) -> dict[str, str]:
    """``{module name: "input" | "output"}``: where :func:`quantize_w8a8` rounds activations (the input of
    the mixer, MLP and unembedding; the output of the hooks that only ``W_O`` and ``W_out`` read)."""
    sites = {"unembed": "input"}
    for i, block in enumerate(model.blocks):
        if block.has_mixer:  # a block may hold an MLP only (cfg.block_kinds)
            sites[f"blocks.{i}.attn"] = "input"
            sites[f"blocks.{i}.attn.{'hook_o_in' if hasattr(block.attn, 'hook_o_in') else 'hook_z'}"] = "output"
        if block.has_mlp:
            sites[f"blocks.{i}.mlp"] = "input"
            if hasattr(block.mlp, "hook_post"):  # a mixture of experts has no one hidden activation to round
                sites[f"blocks.{i}.mlp.hook_post"] = "output"
    return sites


def quantize_w8a8(model, activations: Granularity = "per_tensor", weights: bool = True, activation_bits: int = 8):
    """A new model with int8 per-output-channel weights and dynamic int8 activations at every matmul input
    (see the module docstring); ``model`` is not changed. ``weights=False`` rounds the activations only;
    ``activation_bits`` < 8 (e.g. 4: W8A4) is a harsher test of the same activations.
    The new model carries ``quantization = {"weights": ..., "activations": ...}``."""
    from ...model import HookedFastWeightLM

    if not isinstance(model, HookedFastWeightLM):
        raise TypeError(f"quantize_w8a8 needs a HookedFastWeightLM, got {type(model).__name__}")
    qmax(activation_bits)  # validates
    if activations not in GRANULARITIES:
        raise ValueError(f"activations must be one of {GRANULARITIES}, got {activations!r}")
    if getattr(model, "quantization", None):
        raise ValueError("this model is already quantised; quantise the original float model")
    new = copy.deepcopy(model)
    if weights:
        with torch.no_grad():
            for name, p in new.named_parameters():
                axes = INPUT_AXES.get(name.rsplit(".", 1)[-1])
                if axes is not None:
                    p.copy_(quantize_weight(p, axes))
    modules = dict(new.named_modules())
    for name, where in activation_sites(new).items():
        if where == "input":
            modules[name].register_forward_pre_hook(
                functools.partial(_quantize_input, granularity=activations, bits=activation_bits))
        else:
            modules[name].register_forward_hook(
                functools.partial(_quantize_output, granularity=activations, bits=activation_bits))
    new.quantization = {"weights": "int8 per output channel" if weights else "float",
                        "activations": f"int{activation_bits} {activations.replace('_', '-')} (dynamic)"}
    return new


def w8a8_perplexity(model, task, activations: Granularity = "per_tensor", weights: bool = True,
                    activation_bits: int = 8, batch_size: int = 16) -> dict[str, Any]:
    """Validation perplexity of ``model`` on a :class:`~workbench.tasks.text.TextLM` before and after
    :func:`quantize_w8a8` (same arguments): ``{"ppl_float", "ppl_w8a8", "ppl_ratio", "loss_float",
    "loss_w8a8", "activations"}`` (``ppl_w8a8`` is the quantised model's, whatever ``activation_bits``)."""
    from ...text.evaluate import evaluate_text

    before = evaluate_text(model, task, batch_size=batch_size)
    after = evaluate_text(quantize_w8a8(model, activations, weights=weights, activation_bits=activation_bits), task,
                          batch_size=batch_size)
    return {"ppl_float": before["val_ppl"], "ppl_w8a8": after["val_ppl"],
            "ppl_ratio": after["val_ppl"] / before["val_ppl"], "loss_float": before["val_loss"],
            "loss_w8a8": after["val_loss"], "activations": activations}
