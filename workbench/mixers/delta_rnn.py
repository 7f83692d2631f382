"""The Delta RNN (Irie, Schlag, Csordás, Schmidhuber 2021): the fast net is itself recurrent.

    q, k     = sum_norm(elu(x W_Q) + 1), sum_norm(elu(x W_K) + 1);    v = x W_V;    β = σ(x W_β)
    kʳ, vʳ   = softmax(x W_Kʳ), x W_Vʳ;                                 βʳ = σ(x W_βʳ)     (no biases)
    W_t = W_{t-1} + k_t u_tᵀ,  u_t = β_t (v_t − W_{t-1}ᵀ k_t);          z_t = W_tᵀ q_t     (a DeltaNet)
    R_t = R_{t-1} + kʳ_t uʳ_tᵀ, uʳ_t = βʳ_t (vʳ_t − R_{t-1}ᵀ kʳ_t)
    y_t = z_t + R_tᵀ softmax(y_{t-1})                                   (y_{-1} = 0)
    out = y W_O                                                         (no output bias)

Followed from IDSIA/recurrent-fwp ``algorithmic/layers.py`` (``FastRNNlayer``: one bias-free slow
projection to q, k, v, kʳ, vʳ, β, βʳ; elu+1 and sum-normalised q, k; softmax kʳ; a bias-free output
projection) and the loops checking ``fast_weight_delta`` and ``fast_rnn_v2`` (see
``workbench.kernels.delta_rnn``). Their layer's pre-LayerNorm and residual are the block's here. (The
language-modelling layer ``CudaFastRNNv2Layer`` in ``language_modeling/src/utils/cuda_fast_weight_layer.py``
also scales y by 1/√d_head before its output projection; the algorithmic layer followed here does not.)

The state: ``[d_k, 2·d_v]`` per head, the columns ``[W | R]`` (so ``d_v`` of this mixer is 2·d_head; a
key k_t indexes W's rows, s_t = softmax(y_{t-1}) indexes R's). To continue from a position the
recurrence also needs y_{t-1}: it sets ``feeds_back_output`` and the state machinery passes it
(:mod:`workbench.mixers.state`). Both fast matrices evolve independently of y; only the read-out is
recurrent.

Hooks. The fast nets' inputs (``hook_q`` … ``hook_rec_beta``) are recurrence inputs: patching them
re-runs it. ``hook_delta``, ``hook_v_old``, ``hook_ff``, ``hook_feedback``, ``hook_rec_delta``,
``hook_rec_v_old`` and ``hook_rec_read`` are computed inside the recurrence; they fire after it from its
per-position record (carried across a ``carry`` patch by the state machinery; the retrieved values as
v_t − u_t/β_t) and refuse an edit. At a ``carry``-patched position itself the record is the run's before
the patch (the patched read-out is ``hook_z``).
Effective attention is not defined: y reads softmax(y_{t-1}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..kernels import RecurrenceOutput, delta_rnn
from ..kernels.delta_rnn import delta_rnn_read
from .base import CacheGetter, DeltaNetExtrasConfig, LinearSite, Mixer, NotDefinedForMixer
from .hook_edits import read_only
from .registry import register
from .state import RecurrenceInputs, expose_and_patch

FIELDS = ("q", "k", "v", "beta", "rec_k", "rec_v", "rec_beta")
INSIDE = ("of the Delta RNN is computed inside its recurrence, so a patch of it cannot change the run; patch its "
          "inputs (hook_q … hook_rec_beta) or the fast weights (expose_states + hook_state) instead")


@dataclass(frozen=True)
class DeltaRNNConfig(DeltaNetExtrasConfig):
    """The Delta RNN's one option is ``conv_size``: DeltaNet's short convolution on the fast net's
    projections x W_Q, x W_K, x W_V (not in the authors' model; 0 = none). It does not take the Outlier
    Protected block's QK-norm (its q, k are elu+1 and sum-normalised, as in the authors' layer)."""

    kind: ClassVar[str] = "delta_rnn"

    def check(self, model, qk_norm: bool = False) -> None:
        super().check(model, qk_norm)
        if qk_norm:
            raise ValueError(f"the {self.kind} mixer sum-normalises its q and k (elu+1 keys), so the Outlier "
                             "Protected block's QK-norm does not apply; use block='pre_norm'")


class DeltaRNNRecurrence:
    """The Delta RNN as a :class:`~workbench.mixers.state.Recurrence` over q, k, v, beta, rec_k, rec_v,
    rec_beta (after their activations); state ``[batch, head, d_k, 2·d_v]`` = [W | R]; it feeds back
    its output. One form only: every ``backend`` runs ``kernels.delta_rnn(backend="reference")``."""

    feeds_back_output = True

    def run(self, inputs: RecurrenceInputs, *, initial_state: Optional[torch.Tensor] = None,
            previous_output: Optional[torch.Tensor] = None, chunk_size: int = 64, backend: str = "chunk",
            output_final_state: bool = False, output_chunk_states: bool = False,
            output_delta: bool = False) -> RecurrenceOutput:
        return delta_rnn(*(getattr(inputs, n) for n in FIELDS), initial_state=initial_state,
                         previous_output=previous_output, chunk_size=chunk_size, backend="reference",
                         output_final_state=output_final_state, output_chunk_states=output_chunk_states,
                         output_delta=output_delta)

    def read(self, inputs_t, state: torch.Tensor, previous_output: Optional[torch.Tensor] = None) -> torch.Tensor:
        """y_t = W_tᵀ q_t + R_tᵀ softmax(y_{t-1}) ``[..., head, d_v]`` (y_{t-1} None: zeros). Given only
        ``q`` (e.g. a key from ``hook_k``, as the recall probe asks), the feed-forward memory's W_tᵀ q."""
        q = inputs_t["q"].to(state)
        dv = state.shape[-1] // 2
        if "rec_k" not in inputs_t:
            return torch.einsum("...k,...kv->...v", q, state[..., :dv])
        y_prev = state.new_zeros(state.shape[:-2] + (dv,)) if previous_output is None else previous_output
        z, r = delta_rnn_read(q, state, y_prev.to(state))
        return z + r

    def effective_attention(self, inputs: RecurrenceInputs) -> torch.Tensor:
        raise NotDefinedForMixer(
            "effective attention is not defined for the Delta RNN: each output reads R_tᵀ softmax(y_{t-1}), "
            "so it is not linear in the values (hook_v); read its fast weights (model.fast_weights: "
            "[W | R]) or patch them (expose_states) instead")


@register
class DeltaRNN(Mixer):
    Config = DeltaRNNConfig
    recurrence = DeltaRNNRecurrence()
    input_hooks: ClassVar[tuple[str, ...]] = tuple(f"hook_{n}" for n in FIELDS)
    patch_hooks: ClassVar[dict[str, str]] = {"beta": "hook_beta"}  # W's write strength; the writes are read-only
    supports_step: ClassVar[bool] = True  # carries [W | R] and y (and the input conv's last inputs)

    def __init__(self, cfg: DeltaRNNConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        self.add_qkvo_(bias=False)
        h, dm, dh = self.n_heads, self.d_model, self.d_head
        self.add_short_convs_(cfg.conv_size, {n: h * dh for n in ("q", "k", "v")})
        self.add_output_norm_(cfg.output_norm)
        self.W_RK = nn.Parameter(torch.empty(h, dm, dh))
        self.W_RV = nn.Parameter(torch.empty(h, dm, dh))
        self.W_beta = nn.Parameter(torch.empty(dm, h))
        self.W_rbeta = nn.Parameter(torch.empty(dm, h))
        self.hook_q_pre = HookPoint()  # [batch, pos, head, d_head]  x W_Q (after its conv), before elu+1 and sum-norm
        self.hook_k_pre = HookPoint()  # [batch, pos, head, d_head]  x W_K (after its conv), before elu+1 and sum-norm
        self.hook_rec_k_pre = HookPoint()  # [batch, pos, head, d_head]  x W_Kʳ, before the softmax
        self.hook_beta_pre = HookPoint()  # [batch, pos, head]  x W_β, before the sigmoid
        self.hook_rec_beta_pre = HookPoint()  # [batch, pos, head]  x W_βʳ, before the sigmoid
        self.hook_q = HookPoint()  # [batch, pos, head, d_k]  q_t = sum_norm(elu(x W_Q) + 1), reads W
        self.hook_k = HookPoint()  # [batch, pos, head, d_k]  k_t, the key written into W
        self.hook_v = HookPoint()  # [batch, pos, head, d_v]  v_t = x W_V (after its conv), the value written into W
        self.hook_beta = HookPoint()  # [batch, pos, head]  β_t, W's write strength
        self.hook_rec_k = HookPoint()  # [batch, pos, head, d_v]  kʳ_t = softmax(x W_Kʳ), the key written into R
        self.hook_rec_v = HookPoint()  # [batch, pos, head, d_v]  vʳ_t = x W_Vʳ, the value written into R
        self.hook_rec_beta = HookPoint()  # [batch, pos, head]  βʳ_t, R's write strength
        self.hook_v_old = HookPoint()  # [batch, pos, head, d_v]  W_{t-1}ᵀ k_t, retrieved before the write
        self.hook_delta = HookPoint()  # [batch, pos, head, d_v]  u_t = β_t(v_t − W_{t-1}ᵀk_t), W's write
        self.hook_ff = HookPoint()  # [batch, pos, head, d_v]  z_t = W_tᵀ q_t, the feed-forward fast net's read
        self.hook_feedback = HookPoint()  # [batch, pos, head, d_v]  s_t = softmax(y_{t-1}), what R reads
        self.hook_rec_v_old = HookPoint()  # [batch, pos, head, d_v]  R_{t-1}ᵀ kʳ_t, retrieved before the write
        self.hook_rec_delta = HookPoint()  # [batch, pos, head, d_v]  uʳ_t = βʳ_t(vʳ_t − R_{t-1}ᵀkʳ_t), R's write
        self.hook_rec_read = HookPoint()  # [batch, pos, head, d_v]  R_tᵀ s_t, the recurrent read
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_k, d_v]  [W_t | R_t]; only inside expose_states
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]  y_t = z_t + R_tᵀ s_t (fed back as s_{t+1})

    @classmethod
    def label(cls, cfg: DeltaRNNConfig) -> str:
        return "Delta RNN"

    @property
    def d_v(self) -> int:
        """A state row holds W's and R's: 2·d_head columns ([W | R])."""
        return 2 * self.d_head

    # -- the interface --------------------------------------------------------------------------
    def state_write(self, get: CacheGetter) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotDefinedForMixer(
            "the Delta RNN's state [W | R] holds two fast matrices, each written with its own rank-one write "
            "(k_t u_tᵀ into W, kʳ_t uʳ_tᵀ into R): one position writes a rank-two update, which no single rank-one "
            "atom replaces")

    def recurrence_inputs(self, get: CacheGetter) -> RecurrenceInputs:
        return RecurrenceInputs({n: get(f"hook_{n}") for n in FIELDS})

    def knockout_inputs(self, inputs: RecurrenceInputs, sources: list[int], head: int) -> RecurrenceInputs:
        """The values written into W and the recurrent fast matrix R (``v`` and ``rec_v``) zeroed at ``sources`` for ``head``."""
        from .knockout import zero_at

        return RecurrenceInputs({**inputs.fields, "v": zero_at(inputs.v, sources, head),
                                 "rec_v": zero_at(inputs.rec_v, sources, head)})

    def linear_sites(self) -> list[LinearSite]:
        hd = self.n_heads * self.d_head
        sites = [LinearSite(kind, param, out, self.d_model, hd, "head_in_out")
                 for kind, param, out in (("q", "W_Q", self.proj_hook("q", "hook_q_pre")),
                                          ("k", "W_K", self.proj_hook("k", "hook_k_pre")),
                                          ("v", "W_V", self.proj_hook("v", "hook_v")),
                                          ("rec_k", "W_RK", "hook_rec_k_pre"),
                                          ("rec_v", "W_RV", "hook_rec_v"))]
        sites += [LinearSite("beta", "W_beta", "hook_beta_pre", self.d_model, self.n_heads, "in_out"),
                  LinearSite("rec_beta", "W_rbeta", "hook_rec_beta_pre", self.d_model, self.n_heads, "in_out"),
                  LinearSite("o", "W_O", None, hd, self.d_model, "head_out", input_hook=self.readout_hook("hook_z"))]
        return sites

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        proj = lambda W: torch.einsum("bpm,hmd->bphd", x, W)  # noqa: E731
        sum_norm = lambda t: t / t.sum(-1, keepdim=True)  # noqa: E731  (as the authors': elu+1 > 0)
        conv = self.short_conv  # DeltaNet's short conv on x W_Q, x W_K, x W_V (identity with conv_size 0)
        q = self.hook_q(sum_norm(F.elu(self.hook_q_pre(conv("q", proj(self.W_Q)))) + 1))
        k = self.hook_k(sum_norm(F.elu(self.hook_k_pre(conv("k", proj(self.W_K)))) + 1))
        v = self.hook_v(conv("v", proj(self.W_V)))
        beta = self.hook_beta(torch.sigmoid(self.hook_beta_pre(x @ self.W_beta)))
        rec_k = self.hook_rec_k(torch.softmax(self.hook_rec_k_pre(proj(self.W_RK)), dim=-1))
        rec_v = self.hook_rec_v(proj(self.W_RV))
        rec_beta = self.hook_rec_beta(torch.sigmoid(self.hook_rec_beta_pre(x @ self.W_rbeta)))
        inputs = RecurrenceInputs(dict(q=q, k=k, v=v, beta=beta, rec_k=rec_k, rec_v=rec_v, rec_beta=rec_beta))
        y_start = self.carried_output(v[:, 0])  # y before the first position: zeros, or a step cache's
        res = self.run_recurrence(inputs, output_delta=True)
        y, record, patched = expose_and_patch(self, inputs, res)
        # the outputs the recurrence fed back: the patched ones after a carry patch, its own after a readout one
        fed = y if patched and self.state_request.mode == "carry" else res.output
        dv = self.d_head
        u, ur, z = record[..., :dv], record[..., dv:2 * dv], record[..., 2 * dv:]
        rec_read = fed - z
        if fed is not res.output:  # at the patched position the record is the run's before the patch
            p = self.state_request.resolve(y.shape[1])[0]
            rec_read[:, p] = res.output[:, p] - z[:, p]
        for hook, t in ((self.hook_v_old, v - u / beta[..., None]), (self.hook_delta, u), (self.hook_ff, z),
                        (self.hook_feedback, torch.softmax(torch.cat([y_start[:, None], fed[:, :-1]], 1), -1)),
                        (self.hook_rec_v_old, rec_v - ur / rec_beta[..., None]), (self.hook_rec_delta, ur),
                        (self.hook_rec_read, rec_read)):
            read_only(hook, t, INSIDE)
        return torch.einsum("bphd,hdm->bpm", self.norm_readout(self.hook_z(y)), self.W_O)
