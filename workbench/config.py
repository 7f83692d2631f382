"""The model configuration: frozen, typed, JSON round-trippable.

A model is fully described by a :class:`ModelConfig`; checkpoints store it as ``config.json``.
Unknown keys and bad values raise ``ValueError`` naming the field and the allowed values.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal, get_args
from .dataclass_io import check_int_fields, check_keys

Mixer = Literal["softmax", "linear", "delta", "gated_delta"]
FeatureMap = Literal["identity", "elu1", "dpfp", "favor"]
QKNorm = Literal["l2", "sum", "none"]
Norm = Literal["layernorm", "rmsnorm", "none"]
MLPKind = Literal["gelu", "swiglu", "none"]
Positional = Literal["learned", "none"]
BlockStyle = Literal["pre_norm", "outlier_protected"]
Backend = Literal["chunk", "reference"]

_CHOICES = {
    "mixer": Mixer,
    "feature_map": FeatureMap,
    "qk_norm": QKNorm,
    "norm": Norm,
    "mlp": MLPKind,
    "positional": Positional,
    "backend": Backend,
    "block": BlockStyle,
}


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to build a :class:`~workbench.model.HookedFastWeightLM`.

    Sizes: ``d_vocab`` tokens, ``n_ctx`` longest sequence (only enforced with learned positions),
    ``n_layers`` blocks of ``n_heads`` heads of width ``d_head`` (keys and values).

    Mixers (one per block, all blocks alike):
      - ``softmax``: causal multi-head attention.
      - ``linear``: sum-rule fast weights with feature map ``feature_map`` applied to q and k
        (``dpfp_nu`` for DPFP, ``favor_features`` random features for FAVOR+, seeded by ``seed``);
        ``sum_norm`` divides by ``z_tᵀ φ(q_t)``.
      - ``delta``: DeltaNet (q/k/v projections, optional short causal conv of ``conv_size``, SiLU,
        ``qk_norm`` on q and k, β = sigmoid(W_β x) (×2 if ``allow_neg_eigval``), per-head RMSNorm,
        output projection).
      - ``gated_delta``: Gated DeltaNet — delta plus decay g = −exp(A_log)·softplus(W_a x + dt_bias)
        and, if ``output_gate``, a SiLU output gate.
    Blocks: pre-norm ``norm`` (or none), ``mlp`` of width ``d_mlp``, ``positional`` embeddings.
    ``block="outlier_protected"`` is the Outlier Protected block of He et al. (2024): no norm before the
    mixer or the MLP, one ``norm`` on the first block's input (plus the final one), each residual branch
    multiplied by ``branch_scale``, and QK-norm: RMS with a learnable gain per channel on the queries and
    keys of the softmax and linear mixers; for the delta mixers (which need ``qk_norm="l2"`` there) unit
    L2 keys — the delta rule is stable only with β‖k‖² ≤ 2 — and the gain on the L2 query only (see
    :mod:`workbench.components.delta_net`).
    ``backend`` and ``chunk_size`` select the recurrence kernel (see :mod:`workbench.kernels`).
    """

    d_vocab: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_head: int = 16
    n_ctx: int = 1024
    mixer: str = "delta"
    # linear attention
    feature_map: str = "identity"
    dpfp_nu: int = 1
    favor_features: int = 32
    sum_norm: bool = False
    # delta / gated delta
    qk_norm: str = "l2"
    conv_size: int = 4
    allow_neg_eigval: bool = False
    output_gate: bool = False
    # block
    norm: str = "layernorm"
    mlp: str = "gelu"
    d_mlp: int = 256
    positional: str = "learned"
    block: str = "pre_norm"
    branch_scale: float = 0.2  # residual-branch weight of the Outlier Protected block (pre-norm: 1)
    # numerics and kernels
    init_std: float = 0.02
    norm_eps: float = 1e-5
    chunk_size: int = 64
    backend: str = "chunk"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, lit in _CHOICES.items():
            value = getattr(self, name)
            allowed = get_args(lit)
            if value not in allowed:
                raise ValueError(f"ModelConfig.{name} must be one of {allowed}, got {value!r}")
        positive = ["d_vocab", "d_model", "n_layers", "n_heads", "d_head", "n_ctx", "dpfp_nu",
                    "favor_features", "chunk_size"]
        check_int_fields(self, tuple(positive))
        check_int_fields(self, ("conv_size", "d_mlp", "seed"), minimum=0)
        if self.mlp != "none" and self.d_mlp < 1:
            raise ValueError(f"ModelConfig.d_mlp must be positive when mlp={self.mlp!r}")
        for name in ["init_std", "norm_eps", "branch_scale"]:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"ModelConfig.{name} must be a positive number, got {value!r}")
        for name in ["sum_norm", "allow_neg_eigval", "output_gate"]:
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"ModelConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.block == "outlier_protected" and self.mixer in ("delta", "gated_delta") and self.qk_norm != "l2":
            raise ValueError(f"ModelConfig.qk_norm must be 'l2' for the {self.mixer} mixer in the Outlier Protected "
                             f"block (its QK-norm keeps the keys unit-norm), got {self.qk_norm!r}")
        if self.dpfp_nu > 2 * self.d_head - 1 and self.feature_map == "dpfp":
            raise ValueError(f"ModelConfig.dpfp_nu must be < 2·d_head = {2 * self.d_head}, got {self.dpfp_nu}")

    # ------------------------------------------------------------------ derived sizes
    @property
    def d_key(self) -> int:
        """Width of the keys that enter the recurrence (after the feature map)."""
        if self.mixer != "linear" or self.feature_map in ("identity", "elu1"):
            return self.d_head
        if self.feature_map == "dpfp":
            return 2 * self.d_head * self.dpfp_nu
        return 2 * self.favor_features

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        data = check_keys(cls, data)
        if "d_vocab" not in data:
            raise ValueError("ModelConfig needs 'd_vocab'")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"model config is not valid JSON: {e}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
