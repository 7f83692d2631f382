"""Read what enters the gated delta rule of a transformers model we did not write, through nnsight.

Qwen3-Next (and Qwen3.5, OLMo-hybrid, which share the code) compute each Gated DeltaNet layer as

  q, k, v, β, g = (projections, short conv, SiLU, β = sigmoid(b), g = −exp(A_log)·softplus(a + dt_bias))
  o, S = torch_chunk_gated_delta_rule(q, k, v, g=g, beta=β, use_qk_l2norm_in_kernel=True, …)
  out  = out_proj(RMSNormGated(o, z))

:func:`capture_gated_delta` saves the arguments and the result of that call with nnsight's ``.source``
(the operations inside a module's ``forward``), so nothing of the model's preprocessing is re-implemented.
:func:`rule_inputs` then applies what the rule does to its arguments before the recurrence:

  q̂_t = l2(q_t) · d_k^-½,   k̂_t = l2(k_t),   l2(x) = x · (Σ_i x_i² + 10⁻⁶)^-½   (in float32; l2 only if
  ``use_qk_l2norm_in_kernel``), and with fewer key heads than value heads, value head h reads key head
  h // (H_v / H_k) (``repeat_interleave``),

so that ``workbench.kernels.delta_rule(q̂, k̂, v, β, g=g)`` is the same recurrence
(S_t = α_t S_{t-1}(I − β_t k̂_t k̂_tᵀ) + β_t k̂_t v_tᵀ, α_t = exp(g_t), o_t = S_tᵀ q̂_t): its output is the
layer's core attention (before the output gate, norm and projection) and its states are the layer's
fast-weight matrices ``[d_k, d_v]`` per value head, the layout of transformers' recurrent state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from ...kernels import RecurrenceOutput, delta_rule
from ..module_paths import module_at

CALL = "torch_chunk_gated_delta_rule_0"  # the first call of the chunked rule in the layer's forward
RULE_ARGS = ("query", "key", "value", "g", "beta", "chunk_size", "initial_state", "output_final_state",
             "use_qk_l2norm_in_kernel")  # transformers' signature (fla's chunk_gated_delta_rule: the same names)
L2_EPS = 1e-6


@dataclass(frozen=True)
class GatedDeltaCapture:
    """One Gated DeltaNet layer's recurrence inputs, as :func:`workbench.kernels.delta_rule` takes them.

    ``q`` ``[batch, pos, head, d_k]`` (normalised and scaled), ``k`` ``[batch, pos, head, d_k]``
    (normalised), ``v`` ``[batch, pos, head, d_v]``, ``beta`` and ``g`` ``[batch, pos, head]``, all float32
    with head = the value heads; ``output`` ``[batch, pos, head, d_v]`` the model's own rule output (its
    dtype); ``final_state`` ``[batch, head, d_k, d_v]`` the model's final recurrent state, when the model
    asked for it (with a cache), else None. ``module`` is the layer's module path.
    """

    module: str
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    beta: torch.Tensor
    g: torch.Tensor
    output: torch.Tensor
    final_state: Optional[torch.Tensor]

    @property
    def layer(self) -> int:
        """The first integer in the module path (the block index), or -1."""
        ints = [int(part) for part in self.module.split(".") if part.isdigit()]
        return ints[0] if ints else -1


def gated_delta_modules(model) -> list[str]:
    """Paths of the Gated DeltaNet layers (classes named ``*GatedDeltaNet``) of a torch or nnsight model."""
    root = getattr(model, "_module", model)
    return [name for name, mod in root.named_modules() if type(mod).__name__.endswith("GatedDeltaNet")]


def rule_inputs(args: Sequence, kwargs: dict) -> dict[str, torch.Tensor]:
    """The recurrence inputs ``q, k, v, beta, g`` (float32, value heads) from the arguments of a call of
    ``torch_chunk_gated_delta_rule`` / ``chunk_gated_delta_rule`` (see the module docstring)."""
    bound = dict(zip(RULE_ARGS, args))
    overlap = set(bound) & set(kwargs)
    if overlap:
        raise ValueError(f"arguments {sorted(overlap)} given twice; is this a call of the gated delta rule?")
    bound.update(kwargs)
    missing = [n for n in ("query", "key", "value", "g", "beta") if bound.get(n) is None]
    if missing:
        raise ValueError(f"the captured call lacks {missing}; expected the signature {RULE_ARGS}")
    if bound.get("initial_state") is not None:
        raise ValueError("the layer started from a cached recurrent state; capture whole sequences "
                         "(no past_key_values), so that every state starts from zero")
    q, k, v = (bound[n].float() for n in ("query", "key", "value"))
    h_k, h_v = k.shape[2], v.shape[2]
    if h_v % h_k:
        raise ValueError(f"{h_v} value heads cannot share {h_k} key heads evenly")
    if h_v != h_k:
        q, k = q.repeat_interleave(h_v // h_k, dim=2), k.repeat_interleave(h_v // h_k, dim=2)
    if bound.get("use_qk_l2norm_in_kernel", False):
        q = q * torch.rsqrt(q.pow(2).sum(-1, keepdim=True) + L2_EPS)
        k = k * torch.rsqrt(k.pow(2).sum(-1, keepdim=True) + L2_EPS)
    q = q * q.shape[-1] ** -0.5
    return {"q": q, "k": k, "v": v, "beta": bound["beta"].float(), "g": bound["g"].float()}


@torch.no_grad()
def capture_gated_delta(model, input_ids: torch.Tensor, modules: Optional[Sequence[str]] = None
                        ) -> dict[str, GatedDeltaCapture]:
    """Run ``model`` (a transformers model with Gated DeltaNet layers, or its ``nnsight.NNsight`` wrapper) on
    ``input_ids`` ``[batch, pos]`` once and capture, per layer in ``modules`` (default:
    :func:`gated_delta_modules`, in execution order), the inputs and output of its chunked gated delta rule.

    Returns ``{module path: GatedDeltaCapture}``. nnsight instruments the layers' ``forward`` to reach the
    call (the model's outputs are unchanged).
    """
    try:
        import nnsight
    except ImportError:
        raise ImportError("capture_gated_delta needs nnsight: pip install nnsight") from None
    if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2 or input_ids.dtype.is_floating_point:
        raise ValueError("input_ids must be an integer tensor [batch, pos]")
    wrapped = model if isinstance(model, nnsight.NNsight) else nnsight.NNsight(model)
    modules = gated_delta_modules(wrapped) if modules is None else list(modules)
    if not modules:
        raise ValueError("the model has no Gated DeltaNet layer (no module class named *GatedDeltaNet); pass "
                         "modules=[paths of the layers that call the chunked gated delta rule]")
    calls = {}
    for path in modules:
        try:
            calls[path] = getattr(module_at(wrapped, path).source, CALL)
        except AttributeError:
            raise ValueError(f"{path}.forward does not call torch_chunk_gated_delta_rule (no {CALL!r} in nnsight's "
                             f"source view); print(model.{path}.source) to see its operations") from None
    saved = {}
    try:
        with wrapped.trace(input_ids):
            for path, call in calls.items():
                saved[path] = (call.inputs.save(), call.output.save())
    except Exception as e:
        if type(e).__name__ == "OutOfOrderError":
            raise ValueError(f"list the modules in the order the model runs them ({e})") from None
        raise
    out = {}
    for path, ((args, kwargs), (output, final_state)) in saved.items():
        out[path] = GatedDeltaCapture(module=path, **rule_inputs(args, kwargs), output=output, final_state=final_state)
    return out


def recompute(capture: GatedDeltaCapture, chunk_size: int = 64, backend: str = "chunk") -> RecurrenceOutput:
    """The layer's recurrence recomputed by :func:`workbench.kernels.delta_rule` from the captured inputs:
    ``output`` ``[batch, pos, head, d_v]``, ``final_state`` ``[batch, head, d_k, d_v]`` and ``chunk_states``
    ``[batch, n_chunks, head, d_k, d_v]`` (entry c: the state before position c·chunk_size), float32."""
    return delta_rule(capture.q, capture.k, capture.v, capture.beta, g=capture.g, chunk_size=chunk_size,
                      backend=backend, output_final_state=True, output_chunk_states=True)
