"""Fast Weight Memory (Schlag, Munkhdalai & Schmidhuber, ICLR 2021) as a sequence mixer.

Followed (read, not copied): ischlag/Fast-Weight-Memory-public, ``catbAbI/models/lm_fwm.py``
(``TPRRNNCell``, ``LSTMCell``). The slow net is an LSTM; the memory is a third-order fast tensor per
head, F ``[d_s, d_r, d_t]`` with d_s = d_r = d_t = d_head (the authors' default is s = r = t = 32):

    h_t          = LSTM(x_t)                                   (hidden size d_model; lstm_scan)
    s, r, t      = tanh(h W_s + b_s), tanh(h W_r + b_r), tanh(h W_t + b_t)      per head
    β            = σ(h W_β + b_β + 1)                          ("bias to writing", as the code)
    v_old        = F_{t-1} ×₁ s ×₂ r;   u = β (t − v_old) / d_t;   F_t = (F_{t-1} + s⊗r⊗u) / max(1, ‖·‖_F)
    n⁰ = q = h W_q + b_q (no squashing);   e_j = tanh(h W_e + b_e)_j;   nʲ = LN(F_t ×₁ nʲ⁻¹ ×₂ e_j)
    out          = h + Σ_head n^{n_reads} W_O[head] + b_O      (``residual``: the code's ``z + output``)

The LSTM never reads the memory (its input is x_t and its own state), so everything the memory
consumes is computed before the recurrence: the recurrence is F alone (kernels/fwm). The authors' cell
output ``z + linear(q)`` lives in the LSTM's hidden space; here that space is d_model, so the output
goes straight to the residual stream. The authors read only at answer positions in their
"ra" mode; as a language model (their LM mode) every position reads, as here. Initialisation is the
authors' (``init_extra_``): the LSTM's matrices ~ U(±1/√d_model), the write and read projections ~
U(±√(6/(d_model + d_head))); biases 0 and W_O as the rest of the workbench. With the workbench's default
N(0, 0.02²) instead, s, r, t, q and e are ~0.007, the three hops' read ~1e-8 and the gradient reaching
every memory parameter ~1e-17: the memory never trains (tests/test_init_gradients.py). The constant +1
on β and on the forget gate are kept. The authors have one
F (here: n_heads = 1); with several heads each head's F is rescaled by its own norm. Their training
loss may add ‖F‖ as a regulariser; the workbench's language-model loss does not.

Patching: ``hook_s``, ``hook_r``, ``hook_t``, ``hook_beta``, ``hook_q``, ``hook_e`` feed the recurrence;
``hook_v_old`` and ``hook_write`` feed given writes back (u = β(t − v_old')/d_t, resp. u'), holding
every other write fixed and keeping the norm rescaling; ``hook_read`` changes the read-out through its
last hop only (a patched intermediate hop does not re-query F — patch hook_q, hook_e or hook_state);
``hook_h`` changes what the projections and the residual read, not the LSTM's later steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..components.lstm import lstm_scan
from ..dataclass_io import check_int_fields
from ..kernels import RecurrenceOutput, fwm
from ..kernels.fwm import fwm_read
from .base import CacheGetter, DeltaNetExtrasConfig, LinearSite, Mixer, NotDefinedForMixer
from .hook_edits import fire
from .registry import register
from .state import RecurrenceInputs, expose_and_patch

LSTM_MATRICES = ("W_ih", "W_hh")  # the slow net's recurrent matrices (the authors' LSTMCell)


@dataclass(frozen=True)
class FWMConfig(DeltaNetExtrasConfig):
    """Fast Weight Memory options: ``n_reads`` read hops (the authors' default 3) and ``residual`` (add the
    LSTM output h_t to the memory's read-out, as the authors' default); ``conv_size`` a short convolution on
    the LSTM's input (not in the authors' model; 0 = none).

    In the workbench's residual block the authors' ``residual`` is a second skip path: h_t enters the residual
    stream unprojected. With it, the toy recall model did not learn to bind (0.231 on recall with replacement
    after 1500 steps, 1 read, one seed); without it the same model recalled (1.000; scripts/memory_binding.py). The bundled
    ``toy-fwm`` therefore uses ``residual=False`` (README, "Notebooks")."""

    kind: ClassVar[str] = "fwm"
    n_reads: int = 3
    residual: bool = True

    def check(self, model, qk_norm: bool = False) -> None:
        super().check(model, qk_norm)
        check_int_fields(self, ("n_reads",))
        if not isinstance(self.residual, bool):
            raise ValueError(f"FWMConfig.residual must be a bool, got {self.residual!r}")
        if qk_norm:
            raise ValueError("the fwm mixer has no query/key pair for the Outlier Protected block's QK-norm "
                             "(its keys s, r and targets t are tanh-bounded); use block='pre_norm'")


class FWMRecurrence:
    """The Fast Weight Memory as a :class:`~workbench.mixers.state.Recurrence` over inputs s, r, t, beta,
    q, e (and writes: None, or given writes u). States ``[batch, head, d_s, d_r, d_t]``; outputs are every
    hop's result ``[batch, pos, head, hop, d_t]``. Only the reference backend exists (kernels/fwm), so the
    model's ``backend`` does not apply here."""

    def run(self, inputs: RecurrenceInputs, *, backend: str = "reference", **kwargs) -> RecurrenceOutput:
        return fwm(inputs.s, inputs.r, inputs.t, inputs.beta, inputs.q, inputs.e, writes=inputs.writes,
                   backend="reference", **kwargs)

    def read(self, inputs_t, state: torch.Tensor) -> torch.Tensor:  # [..., head, hop, d_t]
        return fwm_read(state, inputs_t["q"], inputs_t["e"])


@register
class FastWeightMemory(Mixer):
    Config = FWMConfig
    state_axes: ClassVar[tuple[str, ...]] = ("d_s", "d_r", "d_t")
    recurrence = FWMRecurrence()
    input_hooks: ClassVar[tuple[str, ...]] = ("hook_s", "hook_r", "hook_t", "hook_beta", "hook_q", "hook_e")
    patch_hooks: ClassVar[dict[str, str]] = {"write": "hook_write", "beta": "hook_beta"}  # see Mixer.patch_sites
    supports_step: ClassVar[bool] = True  # carries F, the LSTM's (h, c) and the input conv's last inputs
    skip_default_init: ClassVar[tuple[str, ...]] = (*LSTM_MATRICES, "W_s", "W_r", "W_t", "W_beta", "W_q", "W_e")

    def __init__(self, cfg: FWMConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        self.add_input_conv_(cfg.conv_size)
        self.add_output_norm_(cfg.output_norm)
        h, dm, dh, n = self.n_heads, self.d_model, self.d_head, cfg.n_reads
        self.W_ih = nn.Parameter(torch.empty(dm, 4 * dm))  # LSTM gates i, f, z, o from x
        self.W_hh = nn.Parameter(torch.empty(dm, 4 * dm))  # LSTM gates from h_{t-1}
        self.b_lstm = nn.Parameter(torch.zeros(4 * dm))
        self.W_s = nn.Parameter(torch.empty(h, dm, dh))
        self.b_s = nn.Parameter(torch.zeros(h, dh))
        self.W_r = nn.Parameter(torch.empty(h, dm, dh))
        self.b_r = nn.Parameter(torch.zeros(h, dh))
        self.W_t = nn.Parameter(torch.empty(h, dm, dh))
        self.b_t = nn.Parameter(torch.zeros(h, dh))
        self.W_beta = nn.Parameter(torch.empty(dm, h))
        self.b_beta = nn.Parameter(torch.zeros(h))
        self.W_q = nn.Parameter(torch.empty(h, dm, dh))
        self.b_q = nn.Parameter(torch.zeros(h, dh))
        self.W_e = nn.Parameter(torch.empty(h, dm, n * dh))  # the read relations of all hops, hop-major
        self.b_e = nn.Parameter(torch.zeros(h, n * dh))
        self.W_O = nn.Parameter(torch.empty(h, dh, dm))
        self.b_O = nn.Parameter(torch.zeros(dm))
        self.hook_h = HookPoint()  # [batch, pos, d_model]  LSTM output h_t (the slow net; the residual path)
        self.hook_s_pre = HookPoint()  # [batch, pos, head, d_s]  h W_s + b_s, before tanh
        self.hook_r_pre = HookPoint()  # [batch, pos, head, d_r]  h W_r + b_r, before tanh
        self.hook_t_pre = HookPoint()  # [batch, pos, head, d_t]  h W_t + b_t, before tanh
        self.hook_beta_pre = HookPoint()  # [batch, pos, head]  h W_β + b_β, before σ(· + 1)
        self.hook_s = HookPoint()  # [batch, pos, head, d_s]  source key s_t
        self.hook_r = HookPoint()  # [batch, pos, head, d_r]  relation key r_t
        self.hook_t = HookPoint()  # [batch, pos, head, d_t]  target t_t
        self.hook_beta = HookPoint()  # [batch, pos, head]  write strength β_t
        self.hook_q = HookPoint()  # [batch, pos, head, d_k]  query entering the mixer
        self.hook_e_pre = HookPoint()  # [batch, pos, head, hop, d_r]  h W_e + b_e, before tanh
        self.hook_e = HookPoint()  # [batch, pos, head, hop, d_r]  read relation e_j of each hop
        self.hook_v_old = HookPoint()  # [batch, pos, head, d_t]  F_{t-1} ×₁ s_t ×₂ r_t: what memory held
        self.hook_write = HookPoint()  # [batch, pos, head, d_t]  u_t = β_t(t_t − v_old_t)/d_t
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_s, d_r, d_t]  F_t; only in expose_states
        self.hook_read = HookPoint()  # [batch, pos, head, hop, d_t]  each hop's result nʲ_t
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]  per-head mixer output

    def init_extra_(self, generator: torch.Generator) -> None:
        """The authors' initialisation (``LSTMCell.reset_parameters``, ``TPRRNNCell.reset_parameters``): the LSTM's
        W_ih, W_hh ~ U(±1/√d_model); W_s, W_r, W_t, W_β (their ``W_write``) and W_q, W_e (``W_read``) ~
        U(±√(6/(d_model + d_head)))."""
        lstm, proj = self.d_model ** -0.5, math.sqrt(6.0 / (self.d_model + self.d_head))
        with torch.no_grad():
            for name in self.skip_default_init:
                p = getattr(self, name)
                bound = lstm if name in LSTM_MATRICES else proj
                p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=generator))

    @classmethod
    def label(cls, cfg: FWMConfig) -> str:
        return f"FWM ({cfg.n_reads} reads)"

    # -- the interface --------------------------------------------------------------------------
    def recurrence_inputs(self, get: CacheGetter) -> RecurrenceInputs:
        return RecurrenceInputs(dict(s=get("hook_s"), r=get("hook_r"), t=get("hook_t"), beta=get("hook_beta"),
                                     q=get("hook_q"), e=get("hook_e"), writes=None))

    def effective_attention(self, get: CacheGetter) -> torch.Tensor:
        raise NotDefinedForMixer(
            f"effective attention is not defined for the {self.label(self.cfg)} mixer: its read-out "
            "LN(F ×₁ q ×₂ e) over several hops is not linear in the values written, and F is rescaled by its "
            "norm; read its fast weights (model.fast_weights) or patch them (expose_states) instead")

    @property
    def adds_beside_heads(self) -> bool:  # the LSTM state h goes straight to the output (``residual``)
        return self.cfg.residual

    def key_value_state(self) -> Optional[str]:
        return ("its state is a third-order tensor F [d_s, d_r, d_t] per head, read in hops "
                "LN(F ×₁ q ×₂ e), not a [d_k, d_v] matrix read as Wᵀk")

    def linear_sites(self) -> list[LinearSite]:
        dm, hd = self.d_model, self.n_heads * self.d_head
        sites = [LinearSite(kind, f"W_{kind}", f"hook_{kind}_pre", dm, hd, "head_in_out", input_hook="hook_h")
                 for kind in ("s", "r", "t")]
        sites.append(LinearSite("beta", "W_beta", "hook_beta_pre", dm, self.n_heads, "in_out", input_hook="hook_h"))
        sites.append(LinearSite("q", "W_q", "hook_q", dm, hd, "head_in_out", input_hook="hook_h"))
        sites.append(LinearSite("e", "W_e", "hook_e_pre", dm, hd * self.cfg.n_reads, "head_in_out",
                                input_hook="hook_h"))
        sites.append(LinearSite("o", "W_O", None, hd, dm, "head_out", input_hook=self.readout_hook("hook_z")))
        return sites

    # -- forward --------------------------------------------------------------------------------
    def _heads(self, h: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bpm,hmd->bphd", h, W) + b  # [batch, pos, head, d]

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        bsz, n_pos, _ = x.shape
        dt = self.d_head
        cache = self.step_cache  # generation: the LSTM continues from its last (h, c)
        h, c = lstm_scan(self.conv_input(x) @ self.W_ih + self.b_lstm, self.W_hh,
                         None if cache is None else cache.buffers.get("lstm"))
        if cache is not None:
            cache.buffers["lstm"] = (h[:, -1], c[:, -1])
        h = self.hook_h(h)
        s = self.hook_s(torch.tanh(self.hook_s_pre(self._heads(h, self.W_s, self.b_s))))
        r = self.hook_r(torch.tanh(self.hook_r_pre(self._heads(h, self.W_r, self.b_r))))
        t = self.hook_t(torch.tanh(self.hook_t_pre(self._heads(h, self.W_t, self.b_t))))
        beta = self.hook_beta(torch.sigmoid(self.hook_beta_pre(h @ self.W_beta + self.b_beta) + 1))
        q = self.hook_q(self._heads(h, self.W_q, self.b_q))
        e_pre = self._heads(h, self.W_e, self.b_e).view(bsz, n_pos, self.n_heads, self.cfg.n_reads, dt)
        e = self.hook_e(torch.tanh(self.hook_e_pre(e_pre)))
        inputs = RecurrenceInputs(dict(s=s, r=r, t=t, beta=beta, q=q, e=e, writes=None))
        res = self.run_recurrence(inputs, output_delta=True)
        # v_old is not returned by the kernel: recovered from the write u = β(t − v_old)/d_t (β > 0)
        v_old = t - res.delta * dt / beta[..., None]
        v_patched, v_edited = fire(self.hook_v_old, v_old)
        writes = res.delta
        if v_edited:  # given answers of the memory
            writes = beta[..., None] * (t - v_patched) / dt
        w_patched, w_edited = fire(self.hook_write, writes)
        if w_edited or writes is not res.delta:  # given writes: rerun the memory
            inputs = RecurrenceInputs({**inputs.fields, "writes": w_patched})
            res = self.run_recurrence(inputs, restart=True, output_delta=True)
        hops, _, _ = expose_and_patch(self, inputs, res)
        z = self.hook_z(self.hook_read(hops)[..., -1, :])
        out = torch.einsum("bphd,hdm->bpm", self.norm_readout(z), self.W_O) + self.b_O
        return h + out if self.cfg.residual else out
