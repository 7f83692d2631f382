"""Causal multi-head softmax attention: the baseline mixer (no fast-weight state; its memory is the
key/value cache).

Options (all off by default, which is the attention every checkpoint of ours was trained with): grouped
key/value heads (``n_kv_heads``: query head i reads key/value head i // (heads / n_kv_heads)), rotary
positions on q and k (``rotary_base``), biases on the q, k, v projections (``qkv_bias``), a sliding window
(``window``: query t sees keys t − window + 1 … t), a head count and width of its own (``n_heads``,
``d_head``: a softmax layer in a hybrid model whose linear layers have other head sizes), and what the
attention layers of Qwen3-Next / Qwen3.5 and OLMo add: an RMS norm with a learned gain on q and k
(``qk_rmsnorm``: "head" over each head's channels as Qwen3, "all" over all heads' channels together as OLMo 2),
rotary positions on the first ``rotary_dim`` channels of each head only (partial rotary), and a sigmoid
output gate per channel (``output_gate``: z ⊙ sigmoid(x W_G) is what W_O reads).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..components.norms import QKRMSNorm
from ..components.rotary import rotate
from ..dataclass_io import check_int_fields
from .base import CacheGetter, LinearSite, Mixer, MixerConfig, NotDefinedForMixer
from .registry import register


@dataclass(frozen=True)
class SoftmaxConfig(MixerConfig):
    """Softmax attention options: ``n_kv_heads`` (0: one key/value head per query head), ``rotary_base`` (0:
    no rotary positions), ``qkv_bias``, ``window`` (0: the whole causal prefix), ``n_heads`` and ``d_head``
    (0: the model's), ``qk_rmsnorm`` ("none", "head", "all"), ``rotary_dim`` (0: every channel of a head),
    ``output_gate``."""

    kind: ClassVar[str] = "softmax"
    n_kv_heads: int = 0
    rotary_base: float = 0.0
    qkv_bias: bool = False
    window: int = 0
    n_heads: int = 0
    d_head: int = 0
    qk_rmsnorm: Literal["none", "head", "all"] = "none"
    rotary_dim: int = 0
    output_gate: bool = False

    def check(self, model, qk_norm: bool = False) -> None:
        name = type(self).__name__
        check_int_fields(self, ("n_kv_heads", "window", "n_heads", "d_head", "rotary_dim"), minimum=0)
        heads = self.n_heads or model.n_heads
        if self.n_kv_heads and heads % self.n_kv_heads:
            raise ValueError(f"{name}.n_kv_heads = {self.n_kv_heads} must divide the {heads} query heads")
        base = self.rotary_base
        if not isinstance(base, (int, float)) or isinstance(base, bool) or base < 0:
            raise ValueError(f"{name}.rotary_base must be a non-negative number (0: no rotary), got {base!r}")
        if base and (self.d_head or model.d_head) % 2:
            raise ValueError(f"{name}: rotary positions need an even d_head, got {self.d_head or model.d_head}")
        for flag in ("qkv_bias", "output_gate"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{name}.{flag} must be a bool, got {getattr(self, flag)!r}")
        if self.qk_rmsnorm not in ("none", "head", "all"):
            raise ValueError(f"{name}.qk_rmsnorm must be 'none', 'head' or 'all', got {self.qk_rmsnorm!r}")
        if self.qk_rmsnorm != "none" and qk_norm:
            raise ValueError(f"{name}.qk_rmsnorm = {self.qk_rmsnorm!r}: the Outlier Protected block brings its own "
                             "QK-norm")
        if self.rotary_dim and (not base or self.rotary_dim % 2 or self.rotary_dim > (self.d_head or model.d_head)):
            raise ValueError(f"{name}.rotary_dim = {self.rotary_dim} must be even, at most d_head, and needs "
                             "rotary_base")


@register
class SoftmaxAttention(Mixer):
    """z = softmax(q kᵀ / √d_head + causal mask) v per head; out = Σ_head z W_O + b_O.

    In the Outlier Protected block q and k are RMS-normalised per head (QK-norm) before hook_q/hook_k.
    With ``n_kv_heads``, hook_k and hook_v hold each query head's copy of its key/value head (so
    ``hook_z = pattern · hook_v`` per head, as for every mixer); hook_k_pre / hook_v_pre hold the
    ``n_kv_heads`` projections.
    """

    Config = SoftmaxConfig
    effective_attention_hooks: ClassVar[tuple[str, ...]] = ("hook_pattern",)

    def __init__(self, cfg: SoftmaxConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        self.n_heads, self.d_head = cfg.n_heads or model.n_heads, cfg.d_head or model.d_head
        if qk_norm and (cfg.n_heads or cfg.d_head):
            self.q_norm, self.k_norm = self.qk_norm_modules()  # sized for this layer's heads
        h, hkv, dm, dh = self.n_heads, self.n_kv_heads, self.d_model, self.d_head
        if hkv == h:
            self.add_qkvo_()
        else:
            self.W_Q = nn.Parameter(torch.empty(h, dm, dh))
            self.W_K = nn.Parameter(torch.empty(hkv, dm, dh))
            self.W_V = nn.Parameter(torch.empty(hkv, dm, dh))
            self.W_O = nn.Parameter(torch.empty(h, dh, dm))
            self.b_O = nn.Parameter(torch.zeros(dm))
        if cfg.qkv_bias:
            self.b_Q = nn.Parameter(torch.zeros(h, dh))
            self.b_K = nn.Parameter(torch.zeros(hkv, dh))
            self.b_V = nn.Parameter(torch.zeros(hkv, dh))
        self.scale = dh ** -0.5
        if cfg.qk_rmsnorm != "none":  # gains [head·d_head] ("all") or [d_head] ("head")
            self.q_norm = QKRMSNorm(h * dh if cfg.qk_rmsnorm == "all" else dh, model.norm_eps)
            self.k_norm = QKRMSNorm(hkv * dh if cfg.qk_rmsnorm == "all" else dh, model.norm_eps)
        if cfg.output_gate:
            self.W_G = nn.Parameter(torch.empty(h, dm, dh))
            self.hook_gate = HookPoint()  # [batch, pos, head, d_v]  sigmoid(x W_G)
            self.hook_o_in = HookPoint()  # [batch, pos, head, d_v]  z ⊙ gate: what W_O reads
        if hkv != h:
            self.hook_k_pre = HookPoint()  # [batch, pos, head, d_head]  x W_K (+ b_K): the n_kv_heads heads
            self.hook_v_pre = HookPoint()  # [batch, pos, head, d_v]  x W_V (+ b_V): the n_kv_heads heads
        self.hook_q = HookPoint()  # [batch, pos, head, d_k]
        self.hook_k = HookPoint()  # [batch, pos, head, d_k]
        self.hook_v = HookPoint()  # [batch, pos, head, d_v]
        if cfg.rotary_base:
            self.hook_rot_q = HookPoint()  # [batch, pos, head, d_k]  q after the rotary positions
            self.hook_rot_k = HookPoint()  # [batch, pos, head, d_k]  k after the rotary positions
        self.hook_attn_scores = HookPoint()  # [batch, head, pos, pos]  (query, key) scaled, masked (-inf)
        self.hook_pattern = HookPoint()  # [batch, head, pos, pos]  (query, key)
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]

    @property
    def n_kv_heads(self) -> int:
        return self.cfg.n_kv_heads or self.n_heads

    @classmethod
    def label(cls, cfg: SoftmaxConfig) -> str:
        return "softmax attention"

    def effective_attention(self, get: CacheGetter) -> torch.Tensor:
        return get("hook_pattern")

    def linear_sites(self) -> list[LinearSite]:
        hq, hkv = self.n_heads * self.d_head, self.n_kv_heads * self.d_head
        kv = "_pre" if self.n_kv_heads != self.n_heads else ""
        o_in = "hook_o_in" if self.cfg.output_gate else "hook_z"
        # q, k: the projections' outputs before QK-norm are not hooked; with qk_rmsnorm K-FAC skips them
        qk = () if self.cfg.qk_rmsnorm != "none" else (("q", hq, "hook_q"), ("k", hkv, f"hook_k{kv}"))
        return [LinearSite(kind, f"W_{kind.upper()}", hook, self.d_model, width, "head_in_out")
                for kind, width, hook in (*qk, ("v", hkv, f"hook_v{kv}"))] + [
                LinearSite("o", "W_O", None, hq, self.d_model, "head_out", input_hook=o_in)]

    def _project(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        y = torch.einsum("bpm,hmd->bphd", x, getattr(self, f"W_{kind}"))
        return y + getattr(self, f"b_{kind}") if self.cfg.qkv_bias else y

    def _expand_kv(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, kv_head, d] -> [batch, pos, head, d]
        group = self.n_heads // self.n_kv_heads
        return x if group == 1 else x.repeat_interleave(group, dim=2)

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        q = self.hook_q(self._norm(self.q_norm, self._project(x, "Q")))
        k, v = self._norm(self.k_norm, self._project(x, "K")), self._project(x, "V")
        if self.n_kv_heads != self.n_heads:
            k, v = self._expand_kv(self.hook_k_pre(k)), self._expand_kv(self.hook_v_pre(v))
        k = self.hook_k(k)
        v = self.hook_v(v)
        start = self.step_position()
        if self.cfg.rotary_base:
            q = self.hook_rot_q(rotate(q, self.cfg.rotary_base, self.cfg.rotary_dim, offset=start))
            k = self.hook_rot_k(rotate(k, self.cfg.rotary_base, self.cfg.rotary_dim, offset=start))
        k, v = self.cached_keys_values(k, v)  # with a step cache: the earlier positions' too
        z = self.hook_z(self._attend(q, k, v))
        if self.cfg.output_gate:
            z = self.hook_o_in(z * self.hook_gate(self._gate(x)))
        return torch.einsum("bphd,hdm->bpm", z, self.W_O) + self.b_O

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """softmax(q kᵀ · scale, causal [and windowed]) v, ``[batch, pos, head, d]``, through the scores and pattern
        hooks. Always this one path, hooked or not, so that caching or patching never changes a bit of the output
        (a fused ``scaled_dot_product_attention`` when nothing observes the pattern was barely faster for Qwen3.5's
        attention at T = 512 on one CPU thread, and would round differently)."""
        mask = causal_mask(q.shape[1], k.shape[1], self.cfg.window, q.device)
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * self.scale
        pattern = self.hook_pattern(self.hook_attn_scores(scores.masked_fill(mask, float("-inf"))).softmax(-1))
        return torch.einsum("bhqk,bkhd->bqhd", pattern, v)

    supports_step: ClassVar[bool] = True  # its step cache holds the keys (after rotary) and values seen

    def cached_keys_values(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values ``[batch, pos, head, d]`` of every position up to this call's last: the new ones,
        after those a step cache holds (which then keeps them all)."""
        return cached_keys_values(self.step_cache, k, v)

    def _norm(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, heads, d_head]
        """QK-norm: per head, or (``qk_rmsnorm="all"``) over all heads' channels together (before the
        key/value heads are copied: each key/value head once, as the source models normalise k_proj's output)."""
        if self.cfg.qk_rmsnorm == "all":
            return norm(x.flatten(-2)).view_as(x)
        return norm(x)

    def _gate(self, x: torch.Tensor) -> torch.Tensor:  # [..., d_model] -> [..., head, d_head]
        return torch.sigmoid(torch.einsum("...m,hmd->...hd", x, self.W_G))

    def head_outputs(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return super().head_outputs(z * self._gate(x) if self.cfg.output_gate else z, x)

    def qk_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        why = [reason for flag, reason in (
            (self.cfg.rotary_base, "rotary positions rotate q and k by their positions, so the score is "
                                   "x_q W_Q R_(t-s) W_Kᵀ x_k, not one bilinear form"),
            (self.cfg.qk_rmsnorm != "none" or not isinstance(self.q_norm, nn.Identity),
             "q and k are RMS-normalised before the dot product")) if flag]
        if why:
            raise NotDefinedForMixer(f"this softmax layer has no QK circuit: {'; '.join(why)}; read its scores "
                                     "from hook_attn_scores")
        return self.W_Q, self.W_K.repeat_interleave(self.n_heads // self.n_kv_heads, dim=0)

    def ov_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.cfg.output_gate:
            raise NotDefinedForMixer("this softmax layer has no OV circuit: its output gate sigmoid(x_t W_G) multiplies "
                                     "each head's read-out channel-wise before W_O; cache.stack_head_results() gives "
                                     "each head's exact output")
        return self.W_V.repeat_interleave(self.n_heads // self.n_kv_heads, dim=0), self.W_O

def causal_mask(n_query: int, n_key: int, window: int, device) -> torch.Tensor:
    """``[n_query, n_key]`` True where a query may not see a key: the queries are the last ``n_query`` of the
    ``n_key`` positions; query t sees keys ≤ t (and > t − window with a window)."""
    t = torch.arange(n_key - n_query, n_key, device=device)[:, None]
    s = torch.arange(n_key, device=device)[None]
    mask = s > t
    return mask | (s <= t - window) if window else mask


def cached_keys_values(cache, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(k, v)`` prefixed with (and saved into) ``cache.buffers["kv"]``; unchanged without a cache. O(pos) memory:
    the key/value cache of a transformer."""
    if cache is None:
        return k, v
    past = cache.buffers.get("kv")
    if past is not None:
        k, v = torch.cat([past[0], k], dim=1), torch.cat([past[1], v], dim=1)
    cache.buffers["kv"] = (k, v)
    return k, v
