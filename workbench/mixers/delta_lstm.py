"""The Delta LSTM (Irie, Schlag, Csordás, Schmidhuber 2021; version 4, the paper's Table 2): an LSTM whose
weights are fast weights.

For each gate g ∈ (i, u, o) (the ``gate`` axis, in that order):
    q^g, k^g = sum_norm(elu(x W_Q^g) + 1), sum_norm(elu(x W_K^g) + 1);  v^g = x W_V^g;  β^g = σ(x W_β^g)
    kʳ^g, vʳ^g = softmax(x W_Kʳ^g), x W_Vʳ^g;                           βʳ^g = σ(x W_βʳ^g)   (no biases)
    W^g, R^g: delta-rule fast matrices written with (k^g, v^g, β^g) and (kʳ^g, vʳ^g, βʳ^g);  z^g_t = W^gᵀ_t q^g_t
    s_t = softmax(h_{t-1});  i_t = σ(R^iᵀ s_t + z^i_t);  ũ_t = R^uᵀ s_t + z^u_t;  o_t = σ(R^oᵀ s_t + z^o_t)
    c_t = i_t ⊙ ũ_t + (1 − i_t) ⊙ c_{t-1};   h_t = o_t ⊙ c_t;   out = (h / √d_head) W_O   (no output bias)

Followed from IDSIA/recurrent-fwp ``language_modeling/src/utils/cuda_fast_weight_layer.py``
(``CudaFastLSTMv4Layer``: one bias-free projection to the 15 vectors and 6 strengths; elu+1 and sum-norm;
softmax recurrent keys; ``layer_out = scale * layer_out``; a bias-free ``o_net``) and the loop checking
``fast_lstm_v4`` (see ``workbench.kernels.delta_lstm``). Its LayerNorm and residual are the block's here.

The state: ``[d_k, 6·d_v + 1]`` per head, the columns ``[W^i | W^u | W^o | R^i | R^u | R^o | c]`` (so this
mixer's ``d_v`` is 6·d_head + 1; the cell c_t is the last column). To continue from a position the
recurrence also needs h_{t-1}: it sets ``feeds_back_output`` and the state machinery passes it
(:mod:`workbench.mixers.state`). A read of a state W is h_t = o_t ⊙ c_t with o_t from the state's
matrices and h_{t-1}, c_t the state's last column.

Hooks: the fast nets' inputs (``hook_q`` … ``hook_rec_beta``, with a ``gate`` axis) are recurrence inputs;
the writes, reads, gates, cell and feedback are computed inside the recurrence, fire after it from its
per-position record, and refuse an edit. Effective attention is not defined, nor the recall probe: the
fast memories hold gate pre-activations, not the values of ``hook_v``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..kernels import RecurrenceOutput, delta_lstm
from ..kernels.delta_lstm import delta_lstm_cell, unpack_state
from .base import CacheGetter, DeltaNetExtrasConfig, LinearSite, Mixer, NotDefinedForMixer
from .hook_edits import read_only
from .registry import register
from .state import RecurrenceInputs, expose_and_patch

FIELDS = ("q", "k", "v", "beta", "rec_k", "rec_v", "rec_beta")
INSIDE = ("of the Delta LSTM is computed inside its recurrence, so a patch of it cannot change the run; patch its "
          "inputs (hook_q … hook_rec_beta) or the fast weights (expose_states + hook_state) instead")


@dataclass(frozen=True)
class DeltaLSTMConfig(DeltaNetExtrasConfig):
    """The Delta LSTM's (version 4) one option is ``conv_size``: DeltaNet's short convolution on the fast
    net's projections x W_Q, x W_K, x W_V (not in the authors' model; 0 = none). It does not take the Outlier
    Protected block's QK-norm (its q, k are elu+1 and sum-normalised, as in the authors' layer)."""

    kind: ClassVar[str] = "delta_lstm"

    def check(self, model, qk_norm: bool = False) -> None:
        super().check(model, qk_norm)
        if qk_norm:
            raise ValueError(f"the {self.kind} mixer sum-normalises its q and k (elu+1 keys), so the Outlier "
                             "Protected block's QK-norm does not apply; use block='pre_norm'")


class DeltaLSTMRecurrence:
    """The Delta LSTM as a :class:`~workbench.mixers.state.Recurrence` over q, k, v, beta, rec_k, rec_v,
    rec_beta (each with a gate axis of 3, after their activations); state ``[batch, head, d_k, 6·d_v + 1]``;
    it feeds back h. One form only: every ``backend`` runs ``kernels.delta_lstm(backend="reference")``."""

    feeds_back_output = True

    def run(self, inputs: RecurrenceInputs, *, initial_state: Optional[torch.Tensor] = None,
            previous_output: Optional[torch.Tensor] = None, chunk_size: int = 64, backend: str = "chunk",
            output_final_state: bool = False, output_chunk_states: bool = False,
            output_delta: bool = False) -> RecurrenceOutput:
        return delta_lstm(*(getattr(inputs, n) for n in FIELDS), initial_state=initial_state,
                          previous_output=previous_output, chunk_size=chunk_size, backend="reference",
                          output_final_state=output_final_state, output_chunk_states=output_chunk_states,
                          output_delta=output_delta)

    def read(self, inputs_t, state: torch.Tensor, previous_output: Optional[torch.Tensor] = None) -> torch.Tensor:
        """h_t = o_t ⊙ c_t ``[..., head, d_v]`` from the state after the write at t (its matrices give o_t
        with h_{t-1}, None: zeros; its last column is c_t)."""
        if "rec_k" not in inputs_t:
            raise NotDefinedForMixer(
                "the Delta LSTM's fast weights hold gate pre-activations (input gate, update, output gate), not "
                "the values of hook_v, so a key → value read (the recall probe) does not apply; read W^g and R^g "
                "from model.fast_weights (columns [W^i | W^u | W^o | R^i | R^u | R^o | c]) instead")
        W, R, c = unpack_state(state)
        h_prev = state.new_zeros(c.shape) if previous_output is None else previous_output.to(state)
        z = torch.einsum("...gk,...gkv->...gv", inputs_t["q"].to(state), W)
        o = delta_lstm_cell(z, R, c, h_prev)[2]
        return o * c

    def effective_attention(self, inputs: RecurrenceInputs) -> torch.Tensor:
        raise NotDefinedForMixer(
            "effective attention is not defined for the Delta LSTM: its gates read softmax(h_{t-1}) and its "
            "output is gated, so it is not linear in the values (hook_v); read its fast weights "
            "(model.fast_weights) or patch them (expose_states) instead")


@register
class DeltaLSTM(Mixer):
    Config = DeltaLSTMConfig
    recurrence = DeltaLSTMRecurrence()
    input_hooks: ClassVar[tuple[str, ...]] = tuple(f"hook_{n}" for n in FIELDS)
    patch_hooks: ClassVar[dict[str, str]] = {"beta": "hook_beta"}  # [.., head, gate]; the writes are read-only
    supports_step: ClassVar[bool] = True  # carries the six fast matrices, the cell and h

    def __init__(self, cfg: DeltaLSTMConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        h, dm, dh = self.n_heads, self.d_model, self.d_head
        self.add_short_convs_(cfg.conv_size, {n: h * 3 * dh for n in ("q", "k", "v")})
        self.add_output_norm_(cfg.output_norm)
        for name in ("W_Q", "W_K", "W_V", "W_RK", "W_RV"):  # [head, d_model, 3·d_head], gates i, u, o
            setattr(self, name, nn.Parameter(torch.empty(h, dm, 3 * dh)))
        self.W_beta = nn.Parameter(torch.empty(dm, h * 3))  # [d_model, head·3]
        self.W_rbeta = nn.Parameter(torch.empty(dm, h * 3))
        self.W_O = nn.Parameter(torch.empty(h, dh, dm))
        self.scale = dh ** -0.5
        self.hook_q_pre = HookPoint()  # [batch, pos, head, gate, d_head]  x W_Q (after its conv), before elu+1, sum-norm
        self.hook_k_pre = HookPoint()  # [batch, pos, head, gate, d_head]  x W_K (after its conv), before elu+1, sum-norm
        self.hook_rec_k_pre = HookPoint()  # [batch, pos, head, gate, d_head]  x W_Kʳ, before the softmax
        self.hook_beta_pre = HookPoint()  # [batch, pos, head, gate]  x W_β, before the sigmoid
        self.hook_rec_beta_pre = HookPoint()  # [batch, pos, head, gate]  x W_βʳ, before the sigmoid
        self.hook_q = HookPoint()  # [batch, pos, head, gate, d_k]  q^g_t, reads W^g
        self.hook_k = HookPoint()  # [batch, pos, head, gate, d_k]  k^g_t, the key written into W^g
        self.hook_v = HookPoint()  # [batch, pos, head, gate, d_v]  v^g_t, the value written into W^g
        self.hook_beta = HookPoint()  # [batch, pos, head, gate]  β^g_t, W^g's write strength
        self.hook_rec_k = HookPoint()  # [batch, pos, head, gate, d_v]  kʳ^g_t, the key written into R^g
        self.hook_rec_v = HookPoint()  # [batch, pos, head, gate, d_v]  vʳ^g_t, the value written into R^g
        self.hook_rec_beta = HookPoint()  # [batch, pos, head, gate]  βʳ^g_t, R^g's write strength
        self.hook_delta = HookPoint()  # [batch, pos, head, gate, d_v]  u^g_t, W^g's write
        self.hook_rec_delta = HookPoint()  # [batch, pos, head, gate, d_v]  uʳ^g_t, R^g's write
        self.hook_ff = HookPoint()  # [batch, pos, head, gate, d_v]  z^g_t = W^gᵀ_t q^g_t, the feed-forward reads
        self.hook_feedback = HookPoint()  # [batch, pos, head, d_v]  s_t = softmax(h_{t-1}), what the R^g read
        self.hook_gate_i = HookPoint()  # [batch, pos, head, d_v]  input gate i_t
        self.hook_update = HookPoint()  # [batch, pos, head, d_v]  update ũ_t (linear in v4)
        self.hook_gate_o = HookPoint()  # [batch, pos, head, d_v]  output gate o_t
        self.hook_cell = HookPoint()  # [batch, pos, head, d_v]  cell c_t
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_k, d_v]  [W^i|W^u|W^o|R^i|R^u|R^o|c]; only inside expose_states
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]  h_t = o_t ⊙ c_t (fed back as s_{t+1})
        self.hook_o_in = HookPoint()  # [batch, pos, head, d_v]  h_t / √d_head: what W_O reads

    @classmethod
    def label(cls, cfg: DeltaLSTMConfig) -> str:
        return "Delta LSTM"

    @property
    def d_v(self) -> int:
        """A state row holds the six fast matrices' rows and the cell: 6·d_head + 1 columns."""
        return 6 * self.d_head + 1

    # -- the interface --------------------------------------------------------------------------
    def key_value_state(self) -> Optional[str]:
        return ("its fast weights hold gate pre-activations (input gate, update, output gate) packed as "
                "[W^i | W^u | W^o | R^i | R^u | R^o | c], not values read as Wᵀk")

    def recurrence_inputs(self, get: CacheGetter) -> RecurrenceInputs:
        return RecurrenceInputs({n: get(f"hook_{n}") for n in FIELDS})

    def knockout_inputs(self, inputs: RecurrenceInputs, sources: list[int], head: int) -> RecurrenceInputs:
        """The values written into each gate's W^g and R^g (``v`` and ``rec_v``) zeroed at ``sources`` for ``head``."""
        from .knockout import zero_at

        return RecurrenceInputs({**inputs.fields, "v": zero_at(inputs.v, sources, head),
                                 "rec_v": zero_at(inputs.rec_v, sources, head)})

    def head_outputs(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return super().head_outputs(z if self.has_output_norm else z * self.scale, x)

    def linear_sites(self) -> list[LinearSite]:
        h3 = self.n_heads * 3 * self.d_head
        sites = [LinearSite(kind, param, out, self.d_model, h3, "head_in_out")
                 for kind, param, out in (("q", "W_Q", self.proj_hook("q", "hook_q_pre")),
                                          ("k", "W_K", self.proj_hook("k", "hook_k_pre")),
                                          ("v", "W_V", self.proj_hook("v", "hook_v")),
                                          ("rec_k", "W_RK", "hook_rec_k_pre"),
                                          ("rec_v", "W_RV", "hook_rec_v"))]
        sites += [LinearSite("beta", "W_beta", "hook_beta_pre", self.d_model, 3 * self.n_heads, "in_out"),
                  LinearSite("rec_beta", "W_rbeta", "hook_rec_beta_pre", self.d_model, 3 * self.n_heads, "in_out"),
                  LinearSite("o", "W_O", None, self.n_heads * self.d_head, self.d_model, "head_out",
                             input_hook="hook_o_in")]
        return sites

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        b, p, _ = x.shape
        h, dh = self.n_heads, self.d_head
        proj = lambda W: torch.einsum("bpm,hmd->bphd", x, W).view(b, p, h, 3, dh)  # noqa: E731
        strength = lambda W: (x @ W).view(b, p, h, 3)  # noqa: E731
        sum_norm = lambda t: t / t.sum(-1, keepdim=True)  # noqa: E731  (as the authors': elu+1 > 0)
        conv = self.short_conv  # DeltaNet's short conv on x W_Q, x W_K, x W_V (identity with conv_size 0)
        q = self.hook_q(sum_norm(F.elu(self.hook_q_pre(conv("q", proj(self.W_Q)))) + 1))
        k = self.hook_k(sum_norm(F.elu(self.hook_k_pre(conv("k", proj(self.W_K)))) + 1))
        v = self.hook_v(conv("v", proj(self.W_V)))
        beta = self.hook_beta(torch.sigmoid(self.hook_beta_pre(strength(self.W_beta))))
        rec_k = self.hook_rec_k(torch.softmax(self.hook_rec_k_pre(proj(self.W_RK)), dim=-1))
        rec_v = self.hook_rec_v(proj(self.W_RV))
        rec_beta = self.hook_rec_beta(torch.sigmoid(self.hook_rec_beta_pre(strength(self.W_rbeta))))
        inputs = RecurrenceInputs(dict(q=q, k=k, v=v, beta=beta, rec_k=rec_k, rec_v=rec_v, rec_beta=rec_beta))
        h_start = self.carried_output(v[:, 0, :, 0])  # h before the first position: zeros, or a step cache's
        res = self.run_recurrence(inputs, output_delta=True)
        y, record, patched = expose_and_patch(self, inputs, res)
        # the outputs the recurrence fed back: the patched ones after a carry patch, its own after a readout one
        fed = y if patched and self.state_request.mode == "carry" else res.output
        blocks = record.unflatten(-1, (13, dh))  # [batch, pos, head, 13, d_v]
        s = torch.softmax(torch.cat([h_start[:, None], fed[:, :-1]], 1), -1)
        for hook, t in ((self.hook_delta, blocks[..., 0:3, :]), (self.hook_rec_delta, blocks[..., 3:6, :]),
                        (self.hook_ff, blocks[..., 6:9, :]), (self.hook_feedback, s),
                        (self.hook_gate_i, blocks[..., 9, :]), (self.hook_update, blocks[..., 10, :]),
                        (self.hook_gate_o, blocks[..., 11, :]), (self.hook_cell, blocks[..., 12, :])):
            read_only(hook, t, INSIDE)
        z = self.hook_z(y)
        o_in = self.norm_readout(z) if self.has_output_norm else z * self.scale
        return torch.einsum("bphd,hdm->bpm", self.hook_o_in(o_in), self.W_O)
