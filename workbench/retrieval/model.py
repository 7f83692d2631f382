"""The retrieval model of Schlag, Irie & Schmidhuber (2021), Sec. 6.1, with a hook on every activation.

One memory, one query read, no layers. For stored pairs (key id κ_i, value index ν_i) and a query key id:

    x_i = [onehot(ν_i) ‖ E[κ_i]]                    [batch, pos, d_v + d_embed]   (E: key embedding)
    k_i = x_i W_K + b_K,   q = E[query] W_Q + b_Q    [batch, pos | query, d_head]
    v_i = onehot(ν_i)                                [batch, pos, d_v]  (d_v = num_keys; fixed, not trained)

    sum rule:    W = Σ_i φ(k_i) v_iᵀ,  z = Σ_i φ(k_i);     ŷ = Wᵀφ(q) / (zᵀφ(q) + eps)
    delta rule:  k̂ = φ(k)/(Σφ(k) + eps), β_i = σ(x_i·w_β + b_β);  for i = 1 … L:  W += β_i (v_i − Wᵀk̂_i) k̂_iᵀ
                 ŷ = Wᵀ q̂,  q̂ = φ(q)/(Σφ(q) + eps)
    fwm:         β_i as above, φ(k) unnormalised;  W_1 = β_1 φ(k_1) v_1ᵀ,  for i = 2 … L:
                 W ← W + β_i φ(k_i)(v_i − Wᵀφ(k_i))ᵀ,  then W ← W / c_i,  c_i = max(1, ‖W‖_F)
                 ŷ = LayerNorm(Wᵀφ(q))   (no affine, eps 1e-5) — the update rule of Fast Weight Memory
                 (Schlag, Munkhdalai & Schmidhuber 2021) as the paper's code runs it as a baseline
    softmax:     ŷ = Σ_i softmax_i(q·k_i / √d_head) v_i      (no memory matrix)

φ ∈ identity, elu+1 ("linear" in the paper), DPFP-ν, FAVOR+ (:mod:`workbench.components.feature_maps`).
The memory is built by :func:`workbench.kernels.linear_attention` (with its normaliser column z, so W is
``[batch, d_key, d_v + 1]``) or :func:`workbench.kernels.delta_rule` (``[batch, d_key, d_v]``; fwm: by its own
loop over positions, :meth:`HookedRetriever.write_fwm`) and exposed at ``hook_memory``; patching that hook
changes what every query reads.
``form="attention"`` computes the same ŷ in the dual form ŷ = A v (fwm: ŷ = LayerNorm(A v); A: the exact
effective attention, at ``hook_pattern``), which is how the sum and delta rules are trained fast. The loss
is 0.5‖onehot(target) − ŷ‖².

The FWM rule, as settled from the authors' code (github.com/ischlag/fast-weight-transformers@ebe13ea,
``synthetic/linearAttention.py`` lines 245–268 for the write and 299–301 for the read): it is the delta
rule on unnormalised keys φ(k), the whole matrix divided by max(1, ‖W‖_F) after every write but the first
(line 266: ``relu(norm − 1) + 1``), and the read is layer-normalised over the values (line 301). Dividing
by c_i is a decay α_i = 1/c_i of the gated delta rule with values v_i/c_i, so given the c_i (``hook_scale``)
the memory is a gated delta-rule memory and its effective attention has the UT form; but c_i depends on the
state it rescales, so no chunked kernel can compute it: the memory is written position by position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens import HookedRootModule
from transformer_lens.hook_points import HookPoint

from ..components.feature_maps import FeatureMap, favor_map, feature_dim, orthogonal_features
from ..dataclass_io import JsonConfig, check_int_fields
from ..kernels import delta_rule, linear_attention, solve_unit_lower
from ..kernels._decay import cumulative_log_decay, decay_from_log, decay_matrix

FEATURE_MAPS = ("softmax", "identity", "elu1", "dpfp", "favor")
UPDATES = ("sum", "delta", "fwm")
FWM_LN_EPS = 1e-5  # the eps of torch's layer_norm, which the paper's FWM read uses (linearAttention.py:301)


@dataclass(frozen=True)
class RetrieverConfig(JsonConfig):
    """``num_keys`` = S keys and S values; keys embedded in ``d_embed`` dims, projected to ``d_head`` (the
    paper's d = 64), then φ = ``feature_map`` (``dpfp_nu``, ``favor_features`` = m) and the ``update`` rule.
    FAVOR+ features are fixed, drawn once from ``seed`` (the workbench's FeatureMap, input scaled by d^-¼),
    or with ``favor_redraw`` as in the paper's code: fresh orthogonal features at every forward call (from a
    generator seeded by ``seed``), no input scaling. ``favor_orthogonal`` (orthogonal vs Gaussian features) and
    ``favor_scale`` (input scaled by d^-¼ or not) set the other two of FAVOR+'s three choices on their own;
    ``None`` keeps what goes with ``favor_redraw`` (redrawn: orthogonal, unscaled; fixed: Gaussian, scaled).
    ``backend``/``chunk_size`` pick the kernel.
    :meth:`paper` fills ``d_embed`` as the paper's code does: int(2S · 1.1)."""

    num_keys: int
    d_embed: int
    d_head: int = 64
    feature_map: str = "elu1"
    update: str = "sum"
    dpfp_nu: int = 1
    favor_features: int = 64
    favor_redraw: bool = False
    favor_orthogonal: Optional[bool] = None
    favor_scale: Optional[bool] = None
    eps: float = 1e-6
    backend: str = "chunk"
    chunk_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        check_int_fields(self, ("num_keys", "d_embed", "d_head", "dpfp_nu", "favor_features", "chunk_size"))
        check_int_fields(self, ("seed",), minimum=0)
        if self.feature_map not in FEATURE_MAPS:
            raise ValueError(f"RetrieverConfig.feature_map must be one of {FEATURE_MAPS}, got {self.feature_map!r}")
        if self.update not in UPDATES:
            raise ValueError(f"RetrieverConfig.update must be one of {UPDATES}, got {self.update!r}")
        if self.feature_map == "softmax" and self.update != "sum":
            raise ValueError("softmax attention has no memory to update; use update='sum' with feature_map='softmax'")
        if self.backend not in ("chunk", "reference"):
            raise ValueError(f"RetrieverConfig.backend must be 'chunk' or 'reference', got {self.backend!r}")
        if not isinstance(self.eps, (int, float)) or isinstance(self.eps, bool) or not self.eps > 0:
            raise ValueError(f"RetrieverConfig.eps must be a positive number, got {self.eps!r}")
        if not isinstance(self.favor_redraw, bool) or (self.favor_redraw and self.feature_map != "favor"):
            raise ValueError(f"RetrieverConfig.favor_redraw must be a bool and needs feature_map='favor', got "
                             f"{self.favor_redraw!r} with {self.feature_map!r}")
        for name in ("favor_orthogonal", "favor_scale"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, bool) or self.feature_map != "favor"):
                raise ValueError(f"RetrieverConfig.{name} must be None or a bool and needs feature_map='favor', got "
                                 f"{value!r} with {self.feature_map!r}")
        if self.feature_map == "dpfp" and self.dpfp_nu >= 2 * self.d_head:
            raise ValueError(f"RetrieverConfig.dpfp_nu must be < 2·d_head = {2 * self.d_head}, got {self.dpfp_nu}")

    @classmethod
    def paper(cls, num_keys: int, **changes: Any) -> "RetrieverConfig":
        """The paper's sizes for S = ``num_keys``: d_embed = int(2S · 1.1), d_head = 64."""
        return cls(num_keys=num_keys, d_embed=int(2 * num_keys * 1.1), **changes)

    @property
    def d_key(self) -> int:
        """d_dot: the width of φ(k), i.e. the number of rows of the memory W (softmax: of k itself)."""
        if self.feature_map == "softmax":
            return self.d_head
        return feature_dim(self.feature_map, self.d_head, self.dpfp_nu, self.favor_features)

    @property
    def favor_choices(self) -> tuple[bool, bool, bool]:
        """FAVOR+'s three choices as run: (redrawn per call, orthogonal features, input scaled by d^-¼)."""
        orthogonal = self.favor_redraw if self.favor_orthogonal is None else self.favor_orthogonal
        scale = (not self.favor_redraw) if self.favor_scale is None else self.favor_scale
        return self.favor_redraw, orthogonal, scale

    @property
    def favor_custom(self) -> bool:
        """Whether φ is FAVOR+ with a choice other than the workbench FeatureMap's (fixed, Gaussian, scaled)."""
        return self.feature_map == "favor" and self.favor_choices != (False, False, True)

    @property
    def label(self) -> str:
        """The paper's legend name: Linear, DPFP-ν, FAVOR+ (m), Softmax."""
        return {"softmax": "Softmax", "identity": "Identity", "elu1": "Linear",
                "dpfp": f"DPFP-{self.dpfp_nu}",
                "favor": f"FAVOR+ ({self.favor_features}{self._favor_tags})"}[self.feature_map]

    @property
    def _favor_tags(self) -> str:
        if self.favor_orthogonal is None and self.favor_scale is None:
            return ", redrawn" if self.favor_redraw else ""
        redraw, orthogonal, scale = self.favor_choices
        return (f", {'redrawn' if redraw else 'fixed'}, {'orthogonal' if orthogonal else 'Gaussian'}"
                f", {'scaled' if scale else 'unscaled'}")

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def read_memory(W: torch.Tensor, keys: torch.Tensor, update: str, eps: float = 1e-6) -> torch.Tensor:
    """What memory ``W: [batch, d_key, d_v (+1)]`` returns for ``keys: [batch, n, d_key]`` → ``[batch, n, d_v]``:
    Wᵀk, divided by the normaliser column (zᵀk + eps) for the sum rule, layer-normalised for fwm."""
    r = torch.einsum("bkv,bnk->bnv", W, keys.to(W.dtype))
    if update == "fwm":
        return F.layer_norm(r, r.shape[-1:], eps=FWM_LN_EPS)
    return r[..., :-1] / (r[..., -1:] + eps) if update == "sum" else r


class HookedRetriever(HookedRootModule):
    """``model(keys, values, queries)`` → ŷ ``[batch, query, num_keys]`` (see the module docstring)."""

    def __init__(self, cfg: RetrieverConfig):
        super().__init__()
        if not isinstance(cfg, RetrieverConfig):
            raise TypeError(f"HookedRetriever needs a RetrieverConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        S, e, d = cfg.num_keys, cfg.d_embed, cfg.d_head
        self.W_E = nn.Parameter(torch.empty(S, e))  # key embedding (keys and queries share it)
        self.W_K = nn.Parameter(torch.empty(S + e, d))
        self.b_K = nn.Parameter(torch.empty(d))
        self.W_Q = nn.Parameter(torch.empty(e, d))
        self.b_Q = nn.Parameter(torch.empty(d))
        if cfg.update in ("delta", "fwm"):
            self.w_beta = nn.Parameter(torch.empty(S + e))
            self.b_beta = nn.Parameter(torch.empty(()))
        if cfg.favor_redraw:  # the paper's FAVOR+: a fresh projection at every forward call
            self.favor_generator = torch.Generator().manual_seed(cfg.seed)
        elif cfg.favor_custom:  # one projection drawn from the seed, as FeatureMap draws it when Gaussian
            gen = torch.Generator().manual_seed(cfg.seed)
            projection = (orthogonal_features(d, cfg.favor_features, gen) if cfg.favor_choices[1]
                          else torch.randn(d, cfg.favor_features, generator=gen))
            self.register_buffer("favor_projection", projection, persistent=False)  # [d_head, m], never trained
        elif cfg.feature_map != "softmax":
            self.phi = FeatureMap(cfg.feature_map, d, 1, cfg.dpfp_nu, cfg.favor_features, cfg.seed)
        self.hook_k = HookPoint()  # [batch, pos, d_key]  what W is written with: φ(k) (delta: k̂); softmax: k
        self.hook_v = HookPoint()  # [batch, pos, d_v]    onehot(value)
        self.hook_beta = HookPoint()  # [batch, pos]       write strength β (delta and fwm)
        self.hook_scale = HookPoint()  # [batch, pos]      fwm: c_i = max(1, ‖W‖_F), what W is divided by after write i
        self.hook_memory = HookPoint()  # [batch, d_key, d_v (+1: z, sum rule)]  W after every write (form='memory')
        self.hook_q = HookPoint()  # [batch, query, d_key]  what W is read with: φ(q) (delta: q̂); softmax: q
        self.hook_pattern = HookPoint()  # [batch, query, pos]  A with ŷ = A v: softmax weights, or the exact
        #                                    effective attention of the memory (form='attention')
        self.hook_out = HookPoint()  # [batch, query, d_v]  ŷ (fwm: after the LayerNorm)
        self.init_weights()
        self.setup()

    @torch.no_grad()
    def init_weights(self) -> None:
        """As the paper's code, from ``cfg.seed`` (never the global RNG): E ~ N(0, 1); W_K, W_Q ~ U(±1/√d_head)
        (softmax: Xavier-uniform); w_β and the biases ~ U(±1/√fan_in) (PyTorch's Linear default)."""
        gen = torch.Generator().manual_seed(self.cfg.seed)

        def uniform(p: torch.Tensor, bound: float) -> None:
            p.copy_(torch.empty(p.shape).uniform_(-bound, bound, generator=gen))

        self.W_E.copy_(torch.randn(self.W_E.shape, generator=gen))
        for W, b in ((self.W_K, self.b_K), (self.W_Q, self.b_Q)):
            fan_in, fan_out = W.shape
            if self.cfg.feature_map == "softmax":
                uniform(W, (6 / (fan_in + fan_out)) ** 0.5)
            else:
                uniform(W, self.cfg.d_head ** -0.5)
            uniform(b, fan_in ** -0.5)
        if self.cfg.update in ("delta", "fwm"):
            uniform(self.w_beta, self.w_beta.shape[0] ** -0.5)
            uniform(self.b_beta, self.w_beta.shape[0] ** -0.5)

    def check_inputs(self, keys: torch.Tensor, values: torch.Tensor, queries: torch.Tensor) -> None:
        S = self.cfg.num_keys
        for name, x in (("keys", keys), ("values", values), ("queries", queries)):
            if not isinstance(x, torch.Tensor) or x.dtype != torch.long or x.dim() != 2:
                raise ValueError(f"{name} must be a [batch, n] long tensor, got "
                                 f"{getattr(x, 'dtype', type(x).__name__)} {tuple(getattr(x, 'shape', ()))}")
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= S):
                raise ValueError(f"{name} must be ids in [0, {S}) (num_keys={S}), got range "
                                 f"[{int(x.min())}, {int(x.max())}]; value tokens of the token form are S + index")
        if keys.shape != values.shape:
            raise ValueError(f"keys and values must have one shape [batch, pos], got {tuple(keys.shape)} and "
                             f"{tuple(values.shape)}")
        if queries.shape[0] != keys.shape[0]:
            raise ValueError(f"queries must have the batch size of keys ({keys.shape[0]}), got {queries.shape[0]}")

    def forward(self, keys: torch.Tensor, values: torch.Tensor, queries: torch.Tensor,
                form: Optional[str] = None) -> torch.Tensor:
        """keys, values ``[batch, pos]`` (ids, value *indices*), queries ``[batch, query]`` → ŷ ``[batch, query, d_v]``.

        ``form`` — how ŷ is computed, equal in exact arithmetic (tested to 1e-5):
          ``"memory"`` (default for the fast-weight models): W is built by the recurrence kernel and read
          (``hook_memory`` fires); ``"attention"``: the dual form ŷ = A v with A the exact effective attention
          over the stored positions (``hook_pattern`` fires; no W, O(query·pos·d_key) rather than
          O(pos·d_key·d_v), so it trains far faster with one query per sequence). Softmax has only ``"attention"``.
        """
        self.check_inputs(keys, values, queries)
        cfg = self.cfg
        form = self.check_form(form)
        S = cfg.num_keys
        v = self.hook_v(F.one_hot(values, S).to(self.W_E.dtype))  # [batch, pos, d_v]
        # [onehot(value) ‖ E[key]] W_K, computed as two row lookups (the one-hot product is a lookup)
        k = self.W_K[:S][values] + (self.W_E @ self.W_K[S:])[keys] + self.b_K  # [batch, pos, d_head]
        q = self.W_E[queries] @ self.W_Q + self.b_Q  # [batch, query, d_head]
        if cfg.feature_map == "softmax":
            k, q = self.hook_k(k), self.hook_q(q)
            pattern = self.hook_pattern(torch.einsum("bqd,bpd->bqp", q, k).mul(cfg.d_head ** -0.5).softmax(-1))
            return self.hook_out(pattern @ v)
        if cfg.favor_custom:
            redraw, orthogonal, scale = cfg.favor_choices
            if not redraw:
                projection = self.favor_projection
            elif orthogonal:
                projection = orthogonal_features(cfg.d_head, cfg.favor_features, self.favor_generator)
            else:
                projection = torch.randn(cfg.d_head, cfg.favor_features, generator=self.favor_generator)
            if scale:
                k, q = k * cfg.d_head ** -0.25, q * cfg.d_head ** -0.25
            k, q = favor_map(k, projection), favor_map(q, projection)  # [batch, ·, d_key]
        else:
            k, q = self.phi(k[:, :, None])[:, :, 0], self.phi(q[:, :, None])[:, :, 0]  # [batch, ·, d_key]
        beta = None
        if cfg.update == "delta":
            k = k / (k.sum(-1, keepdim=True) + cfg.eps)
            q = q / (q.sum(-1, keepdim=True) + cfg.eps)
        if cfg.update in ("delta", "fwm"):
            logit = self.w_beta[:S][values] + (self.W_E @ self.w_beta[S:])[keys] + self.b_beta
            beta = self.hook_beta(torch.sigmoid(logit))  # [batch, pos]
        k, q = self.hook_k(k), self.hook_q(q)
        if cfg.update == "fwm":
            W, scale = self.write_fwm(k, v, beta)
            scale = self.hook_scale(scale)  # [batch, pos]
            if form == "memory":
                W = self.hook_memory(W)  # [batch, d_key, d_v]
                return self.hook_out(read_memory(W, q, cfg.update, cfg.eps))
            pattern = self.hook_pattern(self.effective_attention(k, q, beta, scale))  # [batch, query, pos]
            return self.hook_out(F.layer_norm(pattern @ v, (S,), eps=FWM_LN_EPS))
        if form == "memory":
            W = self.hook_memory(self.write(k, v, beta))  # [batch, d_key, d_v (+1)]
            return self.hook_out(read_memory(W, q, cfg.update, cfg.eps))
        pattern = self.hook_pattern(self.effective_attention(k, q, beta))  # [batch, query, pos]
        return self.hook_out(pattern @ v)

    def check_form(self, form: Optional[str]) -> str:
        if form is None:
            return "attention" if self.cfg.feature_map == "softmax" else "memory"
        if form not in ("memory", "attention"):
            raise ValueError(f"form must be 'memory' or 'attention' (or None for the default), got {form!r}")
        if form == "memory" and self.cfg.feature_map == "softmax":
            raise ValueError("softmax attention keeps no memory matrix; use form='attention' (or None)")
        return form

    def rng_state(self) -> Optional[torch.Tensor]:
        """The state of the model's own generator (the paper's FAVOR+ draws its projection from it at every
        call), or None when its forward pass draws nothing; what a resumed training run must restore."""
        return self.favor_generator.get_state() if self.cfg.favor_redraw else None

    def set_rng_state(self, state: Optional[torch.Tensor]) -> None:
        if (state is None) != (not self.cfg.favor_redraw):
            raise ValueError("this state is of a model with another kind of random feature draw")
        if state is not None:
            self.favor_generator.set_state(state)

    @property
    def train_form(self) -> str:
        """The form that trains fastest on one query per sequence: ``"attention"``, except fwm, whose rescale
        factors need the position-by-position memory anyway (its attention form rebuilds them)."""
        return "memory" if self.cfg.update == "fwm" else self.check_form("attention")

    def effective_attention(self, k: torch.Tensor, q: torch.Tensor, beta: Optional[torch.Tensor] = None,
                            scale: Optional[torch.Tensor] = None) -> torch.Tensor:
        """A ``[batch, query, pos]`` with ŷ = A v exactly (fwm: ŷ = LayerNorm(A v)), from k ``[batch, pos, d_key]``,
        q ``[batch, query, d_key]`` (and for fwm the rescale factors ``scale`` = c ``[batch, pos]``).

        sum rule:   A_qi = qᵀk_i / (Σ_j qᵀk_j + eps)
        delta rule: A_qi = β_i k_iᵀ (I − β_{i+1}k_{i+1}k_{i+1}ᵀ) ⋯ (I − β_L k_L k_Lᵀ) q, computed as
                    A = (β ⊙ M⁻ᵀ K q)ᵀ with M = I + tril(diag(β) K Kᵀ, −1) (the UT form of the recurrence).
        fwm:        the gated delta rule with α_i = 1/c_i and values v_i/c_i: with Γ_ij = Π_{l=j+1..i} α_l,
                    A = (β α ⊙ M⁻ᵀ (Γ_L ⊙ K q))ᵀ, M = I + tril(diag(β)(Γ ⊙ K Kᵀ), −1).
        """
        s = torch.einsum("bqk,bpk->bqp", q, k)  # [batch, query, pos]
        if self.cfg.update == "sum":
            return s / (s.sum(-1, keepdim=True) + self.cfg.eps)
        L = k.shape[1]
        kk = k @ k.transpose(1, 2)  # [batch, pos, pos]
        if self.cfg.update == "fwm":
            log_alpha = -scale.log()  # [batch, pos]
            cum = cumulative_log_decay(log_alpha)
            kk = kk * decay_matrix(cum, dtype=k.dtype)  # Γ_ij, i ≥ j  [batch, pos, pos]
            s = s * decay_from_log(cum[:, -1:] - cum, dtype=k.dtype)[:, None, :]  # Γ_Lj qᵀk_j
        M = torch.eye(L, dtype=k.dtype) + (beta[:, :, None] * kk).tril(-1)  # [batch, pos, pos]
        y = solve_unit_lower(M, s.transpose(1, 2), transpose=True)  # M⁻ᵀ sᵀ: [batch, pos, query]
        if self.cfg.update == "fwm":
            beta = beta / scale  # β α: each write is scaled by its own 1/c too
        return (beta[:, :, None] * y).transpose(1, 2)

    def write(self, k: torch.Tensor, v: torch.Tensor, beta: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The memory after writing every pair: ``k [batch, pos, d_key]``, ``v [batch, pos, d_v]``, ``beta
        [batch, pos]`` (delta) → W ``[batch, d_key, d_v (+1)]``, by the recurrence kernel (its final state;
        the kernel's own per-position outputs are not used)."""
        cfg = self.cfg
        k4, v4 = k[:, :, None], v[:, :, None]  # one head: [batch, pos, 1, ·]
        if cfg.update == "sum":
            res = linear_attention(k4, k4, v4, normalize=True, eps=cfg.eps, chunk_size=cfg.chunk_size,
                                   backend=cfg.backend, output_final_state=True)
        else:
            res = delta_rule(k4, k4, v4, beta[:, :, None], chunk_size=cfg.chunk_size, backend=cfg.backend,
                             output_final_state=True)
        return res.final_state[:, 0]

    def write_fwm(self, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The FWM memory: ``k [batch, pos, d_key]`` (unnormalised φ(k)), ``v [batch, pos, d_v]``, ``beta
        [batch, pos]`` → (W ``[batch, d_key, d_v]``, c ``[batch, pos]``).

        One delta-rule step per position (r = Wᵀk, u = β(v − r), W ← W + k uᵀ), then W ← W / c with
        c = max(1, ‖W‖_F), except after the first write (the paper's loop rescales from its second position
        on: linearAttention.py:256–267). ‖W + k uᵀ‖²_F = ‖W‖² + 2 rᵀu + ‖k‖²‖u‖² is carried along instead of
        re-reading W (the same function, so the same gradient). Written out here rather than as a call of
        :func:`workbench.kernels.delta_rule` per position: c depends on the state it rescales, so the chunked
        kernel cannot run it, and a one-position kernel call per step trained 2–4× slower."""
        b, L, d_key = k.shape
        W = k.new_zeros(b, d_key, v.shape[-1])
        norm2 = k.new_zeros(b)  # ‖W‖²_F
        kk = (k * k).sum(-1)  # [batch, pos]
        scales = [torch.ones_like(norm2)]
        for t in range(L):
            k_t = k[:, t]
            r = torch.bmm(k_t[:, None, :], W)[:, 0]  # Wᵀk_t: [batch, d_v]
            u = beta[:, t, None] * (v[:, t] - r)  # the delta error
            norm2 = norm2 + 2 * (r * u).sum(-1) + kk[:, t] * (u * u).sum(-1)
            if t == 0:
                W = torch.baddbmm(W, k_t[:, :, None], u[:, None, :])
                continue
            scales.append(norm2.clamp_min(1.0).sqrt())
            inv = 1 / scales[-1]
            W = torch.baddbmm(W * inv[:, None, None], k_t[:, :, None], (u * inv[:, None])[:, None, :])
            norm2 = norm2 * inv * inv
        return W, torch.stack(scales, 1)
