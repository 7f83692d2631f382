"""The Recurrent Delta Net (Irie, Schlag, Csordás, Schmidhuber 2021): a delta-rule fast weight programmer
whose slow net also sees its own previous output.

    q̃, k̃, ṽ = x W_Q, x W_K, x W_V;   β̃ = x W_β                    (the slow net; no biases)
    f_t      = tanh(y_{t-1})                                         (y_{-1} = 0)
    q_t, k_t = softmax(q̃_t + f_t R_q), softmax(k̃_t + f_t R_k)
    v_t, β_t = ṽ_t + f_t R_v,          σ(β̃_t + f_t · r_β)
    v̄_t = W_{t-1}ᵀ k_t;   u_t = β_t (v_t − v̄_t);   W_t = W_{t-1} + k_t u_tᵀ;   y_t = W_tᵀ q_t
    out      = y W_O                                                 (no output bias)

Followed from IDSIA/recurrent-fwp ``algorithmic/layers.py`` (``RecUpdateTanhFastFFlayer``: one bias-free
slow projection to q, k, v, β; R_q, R_k, R_v, r_b ~ N(0, 1/d_head); a bias-free output projection) and the
PyTorch loop that checks their CUDA kernel in ``algorithmic/rec_update_fwm_tanh/__init__.py``. Their layer
also holds a pre-LayerNorm and the residual; here the block does both.

The state. ``hook_state`` and ``model.fast_weights`` give the fast matrix W_t ``[d_k, d_v]`` per head (a
key indexes a row, as for DeltaNet). To continue from a position the recurrence also needs y_t; it says
so with ``feeds_back_output = True`` and the state machinery passes the previous output (see
:mod:`workbench.mixers.state`): a ``carry`` patch of W_t continues with the patched read-out
y_t = W'_tᵀ q_t, as the uninterrupted recurrence would.

Hooks. ``hook_q_pre``, ``hook_k_pre``, ``hook_v_pre``, ``hook_beta_pre`` (the slow net's parts) are the
recurrence's inputs: patching them changes the run. ``hook_feedback`` (f_t), ``hook_q``, ``hook_k``,
``hook_v``, ``hook_beta``, ``hook_v_old`` (v̄_t) and ``hook_delta`` (u_t) are computed inside the
recurrence from y_{t-1}; they fire after it, from the run's own outputs (so also after a ``carry``
patch; v̄_t as v_t − u_t/β_t), and a hook that edits one of them raises a ValueError that names what to patch
instead.
Effective attention is not defined: the recurrent terms make y non-linear in the values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..kernels import RecurrenceOutput, rec_delta
from ..kernels.rec_delta import rec_delta_inputs
from .base import CacheGetter, DeltaNetExtrasConfig, LinearSite, Mixer, NotDefinedForMixer
from .hook_edits import read_only
from .registry import register
from .state import RecurrenceInputs, expose_and_patch

INSIDE = ("of the Recurrent Delta Net is computed inside its recurrence (from y_{t-1}), so a patch of it cannot "
          "change the run; patch the slow parts (hook_q_pre, hook_k_pre, hook_v_pre, hook_beta_pre) or the fast "
          "weights (expose_states + hook_state) instead")


@dataclass(frozen=True)
class RecDeltaConfig(DeltaNetExtrasConfig):
    """The Recurrent Delta Net's one option is ``conv_size``: DeltaNet's short convolution on the slow
    projections x W_Q, x W_K, x W_V (not in the authors' model; 0 = none); d_k = d_v = d_head, as the authors' kernel requires. It does not take the
    Outlier Protected block's QK-norm: its q and k pass through a softmax inside the recurrence."""

    kind: ClassVar[str] = "rec_delta"

    def check(self, model, qk_norm: bool = False) -> None:
        super().check(model, qk_norm)
        if qk_norm:
            raise ValueError(f"the {self.kind} mixer's q and k pass through a softmax inside the recurrence, so the "
                             "Outlier Protected block's QK-norm does not apply; use block='pre_norm'")


class RecurrentDeltaRule:
    """The Recurrent Delta Net as a :class:`~workbench.mixers.state.Recurrence` over the slow parts
    ``q_pre, k_pre [batch, pos, head, d_k]``, ``v_pre [batch, pos, head, d_v]``, ``beta_pre [batch, pos,
    head]``, with the recurrent weights read from its mixer. It feeds back its output (``previous_output``).

    It has one form, the sequential loop: the model's ``backend`` setting has no chunkwise form to pick
    here, so every ``backend`` runs ``kernels.rec_delta(backend="reference")``."""

    feeds_back_output = True

    def __init__(self, mixer: Optional["RecurrentDeltaNet"]):
        self.mixer = mixer

    def params(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.mixer
        return m.R_q, m.R_k, m.R_v, m.r_beta

    def run(self, inputs: RecurrenceInputs, *, initial_state: Optional[torch.Tensor] = None,
            previous_output: Optional[torch.Tensor] = None, chunk_size: int = 64, backend: str = "chunk",
            output_final_state: bool = False, output_chunk_states: bool = False,
            output_delta: bool = False) -> RecurrenceOutput:
        return rec_delta(inputs.q_pre, inputs.k_pre, inputs.v_pre, inputs.beta_pre, *self.params(),
                         initial_state=initial_state, previous_output=previous_output, chunk_size=chunk_size,
                         backend="reference", output_final_state=output_final_state,
                         output_chunk_states=output_chunk_states, output_delta=output_delta)

    def read(self, inputs_t, state: torch.Tensor, previous_output: Optional[torch.Tensor] = None) -> torch.Tensor:
        """y_t = W_tᵀ q_t ``[..., head, d_v]``. From one position's slow parts and y_{t-1} (None: zeros), or,
        when ``inputs_t`` holds only ``q``, from that effective query (e.g. a key from ``hook_k``: the recall
        probe asks W_tᵀ k)."""
        if "q_pre" not in inputs_t:
            q_t = inputs_t["q"]
        else:
            x = inputs_t
            y_prev = torch.zeros_like(x["v_pre"]) if previous_output is None else previous_output
            q_t = rec_delta_inputs(x["q_pre"], x["k_pre"], x["v_pre"], x["beta_pre"], *self.params(),
                                   y_prev.to(x["v_pre"]))[0]
        return torch.einsum("...k,...kv->...v", q_t.to(state), state)

    def effective_attention(self, inputs: RecurrenceInputs) -> torch.Tensor:
        raise NotDefinedForMixer(
            "effective attention is not defined for the Recurrent Delta Net: q, k, v and β get recurrent terms "
            "R·tanh(y_{t-1}), so its output is not linear in the values (hook_v); read its fast weights "
            "(model.fast_weights) or patch them (expose_states) instead")


@register
class RecurrentDeltaNet(Mixer):
    Config = RecDeltaConfig
    recurrence = RecurrentDeltaRule(None)  # per instance: RecurrentDeltaRule(self)
    input_hooks: ClassVar[tuple[str, ...]] = ("hook_q_pre", "hook_k_pre", "hook_v_pre", "hook_beta_pre")
    patch_hooks: ClassVar[dict[str, str]] = {"beta": "hook_beta_pre"}  # β's slow part: β_t itself is read-only
    skip_default_init: ClassVar[tuple[str, ...]] = ("R_q", "R_k", "R_v", "r_beta")
    supports_step: ClassVar[bool] = True  # carries W and y (and the input conv's last inputs)

    def __init__(self, cfg: RecDeltaConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        self.add_qkvo_(bias=False)
        h, dm, dh = self.n_heads, self.d_model, self.d_head
        self.W_beta = nn.Parameter(torch.empty(dm, h))
        self.R_q = nn.Parameter(torch.empty(h, dh, dh))  # [head, d_v, d_k]
        self.R_k = nn.Parameter(torch.empty(h, dh, dh))  # [head, d_v, d_k]
        self.R_v = nn.Parameter(torch.empty(h, dh, dh))  # [head, d_v, d_v]
        self.r_beta = nn.Parameter(torch.empty(h, dh))  # [head, d_v]
        self.recurrence = RecurrentDeltaRule(self)
        self.add_short_convs_(cfg.conv_size, {n: h * dh for n in ("q", "k", "v")})
        self.add_output_norm_(cfg.output_norm)
        self.hook_q_pre = HookPoint()  # [batch, pos, head, d_head]  q̃ = x W_Q (after its conv), the slow part of q
        self.hook_k_pre = HookPoint()  # [batch, pos, head, d_head]  k̃ = x W_K (after its conv), the slow part of k
        self.hook_v_pre = HookPoint()  # [batch, pos, head, d_head]  ṽ = x W_V (after its conv), the slow part of v
        self.hook_beta_pre = HookPoint()  # [batch, pos, head]  β̃ = x W_β, the slow part of β (pre-sigmoid)
        self.hook_feedback = HookPoint()  # [batch, pos, head, d_v]  f_t = tanh(y_{t-1}), what R_q, R_k, R_v, r_β read
        self.hook_q = HookPoint()  # [batch, pos, head, d_k]  q_t = softmax(q̃_t + f_t R_q)
        self.hook_k = HookPoint()  # [batch, pos, head, d_k]  k_t = softmax(k̃_t + f_t R_k)
        self.hook_v = HookPoint()  # [batch, pos, head, d_v]  v_t = ṽ_t + f_t R_v
        self.hook_beta = HookPoint()  # [batch, pos, head]  β_t = σ(β̃_t + f_t·r_β)
        self.hook_v_old = HookPoint()  # [batch, pos, head, d_v]  v̄_t = W_{t-1}ᵀ k_t, the value retrieved before the write
        self.hook_delta = HookPoint()  # [batch, pos, head, d_v]  u_t = β_t(v_t − v̄_t), the write
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_k, d_v]  W_t; only inside expose_states
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]  y_t = W_tᵀ q_t, the read-out (fed back as f_{t+1})

    @classmethod
    def label(cls, cfg: RecDeltaConfig) -> str:
        return "Recurrent Delta Net"

    def init_extra_(self, generator: torch.Generator) -> None:
        """R_q, R_k, R_v, r_β ~ N(0, 1/d_head), as ``reset_rec_parameters`` in the authors' layer."""
        std = self.d_head ** -0.5
        with torch.no_grad():
            for p in (self.R_q, self.R_k, self.R_v, self.r_beta):
                p.copy_(torch.randn(p.shape, generator=generator) * std)

    # -- the interface --------------------------------------------------------------------------
    write_hooks: ClassVar[tuple[str, ...]] = ("hook_k", "hook_delta")

    def state_write(self, get: CacheGetter) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_t, u_t): the delta rule's write k_t u_tᵀ (both recorded from the run; see the module docstring)."""
        return get("hook_k"), get("hook_delta")

    def recurrence_inputs(self, get: CacheGetter) -> RecurrenceInputs:
        return RecurrenceInputs(dict(q_pre=get("hook_q_pre"), k_pre=get("hook_k_pre"), v_pre=get("hook_v_pre"),
                                     beta_pre=get("hook_beta_pre")))

    def linear_sites(self) -> list[LinearSite]:
        hd = self.n_heads * self.d_head
        sites = [LinearSite(kind, f"W_{kind.upper()}", self.proj_hook(kind, f"hook_{kind}_pre"), self.d_model, hd,
                            "head_in_out") for kind in ("q", "k", "v")]
        sites.append(LinearSite("beta", "W_beta", "hook_beta_pre", self.d_model, self.n_heads, "in_out"))
        sites.append(LinearSite("o", "W_O", None, hd, self.d_model, "head_out", input_hook=self.readout_hook("hook_z")))
        return sites

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        proj = lambda name, W: self.short_conv(name, torch.einsum("bpm,hmd->bphd", x, W))  # noqa: E731
        q_pre = self.hook_q_pre(proj("q", self.W_Q))
        k_pre = self.hook_k_pre(proj("k", self.W_K))
        v_pre = self.hook_v_pre(proj("v", self.W_V))
        beta_pre = self.hook_beta_pre(x @ self.W_beta)
        inputs = RecurrenceInputs(dict(q_pre=q_pre, k_pre=k_pre, v_pre=v_pre, beta_pre=beta_pre))
        y_start = self.carried_output(v_pre[:, 0])  # y before the first position: zeros, or a step cache's
        res = self.run_recurrence(inputs, output_delta=True)
        y, delta, patched = expose_and_patch(self, inputs, res)
        # what the recurrence computed inside, rebuilt from the outputs it fed back: the patched ones after a
        # carry patch, the run's own after a readout patch (which changes only the read-out)
        fed = y if patched and self.state_request.mode == "carry" else res.output
        y_prev = torch.cat([y_start[:, None], fed[:, :-1]], dim=1)  # [batch, pos, head, d_v]
        q, k, v, beta = rec_delta_inputs(q_pre, k_pre, v_pre, beta_pre, *self.recurrence.params(), y_prev)
        for hook, t in ((self.hook_feedback, torch.tanh(y_prev)), (self.hook_q, q), (self.hook_k, k),
                        (self.hook_v, v), (self.hook_beta, beta), (self.hook_v_old, v - delta / beta[..., None]),
                        (self.hook_delta, delta)):
            read_only(hook, t, INSIDE)
        z = self.hook_z(y)
        return torch.einsum("bphd,hdm->bpm", self.norm_readout(z), self.W_O)
