"""The model configuration: frozen, typed, JSON round-trippable.

A model is fully described by a :class:`ModelConfig`; checkpoints store it as ``config.json``.
Unknown keys and bad values raise ``ValueError`` naming the field and the allowed values.

The sequence mixer of each layer has its own typed config (:mod:`workbench.mixers`), so the model's
fields are only what every layer shares:

    ModelConfig(d_vocab=64, mixer="delta")                                   # DeltaNet, default options
    ModelConfig(d_vocab=64, mixer=DeltaConfig(conv_size=0))                  # with options
    ModelConfig(d_vocab=64, n_layers=4, mixer=["gated_delta"] * 3 + ["softmax"])   # one mixer per layer
    ModelConfig(d_vocab=64, n_layers=4, mixer="mamba2", mlp="relu2",
                block_kinds=["mixer", "mlp", "mixer", "mlp"])                  # mixer-only and MLP-only blocks

``config.json`` of the earlier flat format (``"mixer": "delta", "conv_size": 4, "feature_map": ...``)
still loads: :meth:`ModelConfig.from_dict` moves the options of the named mixer into its config and
drops the other mixers' options when they hold their defaults (they never had an effect).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Literal, Optional, Union, get_args

from .components.moe import MoEConfig
from .dataclass_io import check_int_fields, check_keys
from .mixers import MixerConfig, mixer_config, mixer_fields, names
from .mixers import describe as describe_mixer
from .tl_compat.config_names import TransformerLensNames

Norm = Literal["layernorm", "rmsnorm", "none"]
MLPKind = Literal["gelu", "swiglu", "relu2", "none"]
BlockKind = Literal["mixer_mlp", "mixer", "mlp"]
Positional = Literal["learned", "none"]
BlockStyle = Literal["pre_norm", "outlier_protected"]
Backend = Literal["chunk", "reference"]
MixerSpec = Union[MixerConfig, tuple[Optional[MixerConfig], ...]]
_CHOICES = {"norm": Norm, "mlp": MLPKind, "positional": Positional, "block": BlockStyle, "backend": Backend}

# a guard against damaged or hostile config.json files: the deepest published language models have a few hundred
# layers, while n_layers = 10⁹ would hang the checks below, which loop over the layers (tests/test_fuzz_checkpoints.py)
MAX_LAYERS = 4096

# the mixer options of the flat config.json format, with the defaults they had there
_LEGACY_MIXER_OPTIONS = {"feature_map": "identity", "dpfp_nu": 1, "favor_features": 32, "sum_norm": False,
                         "qk_norm": "l2", "conv_size": 4, "allow_neg_eigval": False, "output_gate": False}


@dataclass(frozen=True)
class ModelConfig(TransformerLensNames):
    """Everything needed to build a :class:`~workbench.model.HookedFastWeightLM`.

    It also answers, read-only, the ``HookedTransformerConfig`` names TransformerLens' tools read
    (``normalization_type``, ``attn_only``, ``device``, ...: :mod:`workbench.tl_compat.config_names`).

    Sizes: ``d_vocab`` tokens, ``n_ctx`` longest sequence (only enforced with learned positions),
    ``n_layers`` blocks of ``n_heads`` heads of width ``d_head``.

    ``mixer``: one mixer config for every layer, or a tuple of ``n_layers`` configs (a hybrid model); a
    name or a ``{"kind": ...}`` dict is turned into the config. ``workbench.mixers.names()`` lists them.
    Blocks: pre-norm ``norm`` (or none), ``mlp`` of width ``d_mlp``, ``positional`` embeddings.
    ``block="outlier_protected"`` is the Outlier Protected block of He et al. (2024): no norm before the
    mixer or the MLP, one ``norm`` on the first block's input (plus the final one), each residual branch
    multiplied by ``branch_scale``, and QK-norm in every mixer (each mixer says how; see its module).
    ``post_norm_layers``: pre-norm blocks that normalise their branches' outputs instead of their inputs
    (OLMo 2 / OLMo-hybrid's attention layers: x = x + norm(attn(x)); x = x + norm(mlp(x))).
    ``block_kinds``: what each block holds (``n_layers`` entries; empty: every block ``"mixer_mlp"``):
    ``"mixer_mlp"`` a mixer and an MLP (two residual lines), ``"mixer"`` a mixer only, ``"mlp"`` an MLP only
    (Nemotron-H's layers: one norm, one branch, one residual line each). A per-layer ``mixer`` tuple holds None
    at the MLP-only blocks; a single mixer applies to every block that has one. ``mlp="none"`` removes every MLP
    (then no block may be ``"mlp"`` or ``"mixer_mlp"``).
    ``moe``: a sparse mixture-of-experts MLP (:class:`~workbench.components.moe.MoEConfig`) in every layer but
    its ``dense_layers`` (which keep the ``d_mlp`` MLP); needs ``mlp="swiglu"``.
    ``mlp``: ``"gelu"``, ``"swiglu"`` or ``"relu2"`` (squared ReLU, no gate: Nemotron-H / Primer).
    ``backend`` and ``chunk_size`` select the recurrence kernel (see :mod:`workbench.kernels`); ``seed``
    seeds the initialisation and any fixed random features.
    """

    d_vocab: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_head: int = 16
    n_ctx: int = 1024
    mixer: MixerSpec = "delta"  # type: ignore[assignment]  (a name is turned into its config)
    # block
    norm: Norm = "layernorm"
    mlp: MLPKind = "gelu"
    d_mlp: int = 256
    positional: Positional = "learned"
    block: BlockStyle = "pre_norm"
    branch_scale: float = 0.2  # residual-branch weight of the Outlier Protected block (pre-norm: 1)
    post_norm_layers: tuple[int, ...] = ()
    moe: Optional[MoEConfig] = None
    block_kinds: tuple[BlockKind, ...] = ()
    # numerics and kernels
    init_std: float = 0.02
    norm_eps: float = 1e-5
    chunk_size: int = 64
    backend: Backend = "chunk"
    seed: int = 0

    def __post_init__(self) -> None:
        for name, choices in _CHOICES.items():
            allowed = get_args(choices)
            if getattr(self, name) not in allowed:
                raise ValueError(f"ModelConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        check_int_fields(self, ("d_vocab", "d_model", "n_layers", "n_heads", "d_head", "n_ctx", "chunk_size"))
        check_int_fields(self, ("d_mlp", "seed"), minimum=0)
        if self.n_layers > MAX_LAYERS:  # checked first: the checks below (and any loader) loop over the layers
            raise ValueError(f"ModelConfig.n_layers = {self.n_layers:,} is absurd (at most {MAX_LAYERS:,}); "
                             "is the config damaged?")
        if self.mlp != "none" and self.d_mlp < 1:
            raise ValueError(f"ModelConfig.d_mlp must be positive when mlp={self.mlp!r}")
        for name in ["init_std", "norm_eps", "branch_scale"]:
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
                raise ValueError(f"ModelConfig.{name} must be a positive number, got {value!r}")
        self._check_post_norm_layers()
        self._check_block_kinds()
        self._check_moe()
        object.__setattr__(self, "mixer", self._mixer_spec(self.mixer))
        for m in self.layer_mixers:
            if m is not None:
                m.check(self, self.qk_norm)

    def _check_post_norm_layers(self) -> None:
        layers = self.post_norm_layers
        if not isinstance(layers, (list, tuple)) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.n_layers for i in layers) \
                or len(set(layers)) != len(layers):
            raise ValueError(f"ModelConfig.post_norm_layers must list distinct layers in [0, {self.n_layers - 1}], "
                             f"got {layers!r}")
        if layers and (self.block != "pre_norm" or self.norm == "none"):
            raise ValueError("ModelConfig.post_norm_layers needs block='pre_norm' and a norm")
        object.__setattr__(self, "post_norm_layers", tuple(sorted(layers)))

    def _check_block_kinds(self) -> None:
        kinds = self.block_kinds
        allowed = get_args(BlockKind)
        if not isinstance(kinds, (list, tuple)) or kinds and (len(kinds) != self.n_layers
                                                              or not all(k in allowed for k in kinds)):
            raise ValueError(f"ModelConfig.block_kinds must list n_layers = {self.n_layers} entries, each one of "
                             f"{allowed} (or be empty: every block 'mixer_mlp'), got {kinds!r}")
        kinds = tuple(kinds)
        if self.mlp == "none" and any(k != "mixer" for k in kinds):
            raise ValueError(f"ModelConfig.block_kinds {list(kinds)} has blocks with an MLP, but mlp='none'")
        if all(k == ("mixer" if self.mlp == "none" else "mixer_mlp") for k in kinds):
            kinds = ()  # the default, written one way only
        object.__setattr__(self, "block_kinds", kinds)

    def block_kind(self, layer: int) -> str:
        """``"mixer_mlp"``, ``"mixer"`` or ``"mlp"``: what block ``layer`` holds (mlp='none' makes every default
        block ``"mixer"``)."""
        if self.block_kinds:
            return self.block_kinds[layer]
        return "mixer" if self.mlp == "none" else "mixer_mlp"

    def has_mixer(self, layer: int) -> bool:
        return self.block_kind(layer) != "mlp"

    def has_mlp(self, layer: int) -> bool:
        return self.block_kind(layer) != "mixer"

    @property
    def mixer_layers(self) -> list[int]:
        """The layers whose block has a mixer."""
        return [i for i in range(self.n_layers) if self.has_mixer(i)]

    @property
    def mlp_layers(self) -> list[int]:
        """The layers whose block has an MLP."""
        return [i for i in range(self.n_layers) if self.has_mlp(i)]

    def _check_moe(self) -> None:
        moe = self.moe
        if isinstance(moe, dict):
            moe = MoEConfig.from_dict(moe)
        if moe is not None and not isinstance(moe, MoEConfig):
            raise ValueError(f"ModelConfig.moe must be a MoEConfig, a dict or None, got {moe!r}")
        if moe is not None and self.mlp not in ("swiglu", "relu2"):
            raise ValueError(f"ModelConfig.moe needs mlp='swiglu' or 'relu2' (its experts are MLPs of that kind), "
                             f"got {self.mlp!r}")
        if moe is not None and any(i >= self.n_layers for i in moe.dense_layers):
            raise ValueError(f"ModelConfig.moe.dense_layers {list(moe.dense_layers)} must be layers in "
                             f"[0, {self.n_layers - 1}]")
        object.__setattr__(self, "moe", moe)

    def moe_at(self, layer: int) -> Optional[MoEConfig]:
        """The mixture-of-experts config of ``layer``'s MLP, or None (a dense MLP, or a block without an MLP)."""
        if self.moe is None or layer in self.moe.dense_layers or not self.has_mlp(layer):
            return None
        return self.moe

    def _mixer_spec(self, value: Any) -> MixerSpec:
        if isinstance(value, (list, tuple)):
            if len(value) != self.n_layers:
                raise ValueError(f"ModelConfig.mixer lists {len(value)} mixers for n_layers = {self.n_layers}; "
                                 "give one per layer, or a single mixer for all layers")
            spec = tuple(None if v is None else self._one_mixer(v) for v in value)
            for i, m in enumerate(spec):
                if (m is None) == self.has_mixer(i):
                    raise ValueError(f"ModelConfig.mixer[{i}] is {'None' if m is None else describe_mixer(m)!r} but "
                                     f"block {i} is {self.block_kind(i)!r}: give a mixer exactly for the blocks that "
                                     "have one, None for the MLP-only blocks")
            present = {m for m in spec if m is not None}
            return present.pop() if len(present) == 1 else spec
        if value is None:
            raise ValueError("ModelConfig.mixer must name a mixer (None only inside a per-layer list, at MLP-only "
                             "blocks)")
        return self._one_mixer(value)

    @staticmethod
    def _one_mixer(value: Any) -> MixerConfig:
        try:
            return mixer_config(value)
        except ValueError as e:
            raise ValueError(f"ModelConfig.mixer: {e}") from None

    # ------------------------------------------------------------------ derived
    @property
    def layer_mixers(self) -> tuple[Optional[MixerConfig], ...]:
        """The mixer config of each layer (``n_layers`` entries; None at an MLP-only block)."""
        if isinstance(self.mixer, tuple):
            return self.mixer
        return tuple(self.mixer if self.has_mixer(i) else None for i in range(self.n_layers))

    @property
    def min_params(self) -> int:
        """A lower bound on the parameter count by arithmetic alone, nothing built: the embedding and unembedding
        (2·d_vocab·d_model), learned positions (n_ctx·d_model) and at least d_model per layer. Loaders compare it
        with the tensors they were given before building anything, so an absurd config (d_model = 10⁹) is refused
        without an allocation (tests/test_config_properties.py checks it stays below the true count)."""
        positions = self.n_ctx if self.positional == "learned" else 0
        return (2 * self.d_vocab + positions + self.n_layers) * self.d_model

    @property
    def qk_norm(self) -> bool:
        """Whether the block style asks the mixers for QK-norm (the Outlier Protected block)."""
        return self.block == "outlier_protected"

    @property
    def mixer_label(self) -> str:
        """E.g. ``"DeltaNet"`` or ``"3 × Gated DeltaNet, softmax attention"`` (runs of equal layers; an MLP-only
        block is ``"MLP"``)."""
        runs: list[list] = []
        for m in self.layer_mixers:
            if runs and runs[-1][0] == m:
                runs[-1][1] += 1
            else:
                runs.append([m, 1])
        label = lambda m: "MLP" if m is None else describe_mixer(m)  # noqa: E731
        if len(runs) == 1:
            return label(runs[0][0])
        return ", ".join((f"{n} × " if n > 1 else "") + label(m) for m, n in runs)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["post_norm_layers"] = list(self.post_norm_layers)
        out["moe"] = None if self.moe is None else self.moe.to_dict()
        out["mixer"] = ([None if m is None else m.to_dict() for m in self.mixer] if isinstance(self.mixer, tuple)
                        else self.mixer.to_dict())
        if self.block_kinds:
            out["block_kinds"] = list(self.block_kinds)
        else:  # the default: config.json stays as it was before the option existed
            del out["block_kinds"]
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        data = _from_flat_format(data) if isinstance(data, dict) else data
        data = check_keys(cls, data)
        if "d_vocab" not in data:
            raise ValueError("ModelConfig needs 'd_vocab'")
        return cls(**data)

    @classmethod
    def from_json(cls, text: str) -> "ModelConfig":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not valid JSON: {e}") from None
        except RecursionError:  # "[[[[…" nested deeper than Python's recursion limit (a damaged or hostile file)
            raise ValueError("not valid JSON: nested too deeply") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "ModelConfig":
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def _from_flat_format(data: dict[str, Any]) -> dict[str, Any]:
    """Move mixer options written at the top level (the flat format) into the mixer's config."""
    flat = {k: data[k] for k in _LEGACY_MIXER_OPTIONS if k in data}
    if not flat:
        return data
    kind = data.get("mixer", "delta")
    if not isinstance(kind, str):
        raise ValueError(f"mixer options {sorted(flat)} belong inside the mixer's config, not at the top level")
    if kind not in names():
        raise ValueError(f"ModelConfig.mixer: unknown mixer {kind!r}; known mixers: {names()}")
    own = set(mixer_fields(kind)) - set(type(mixer_config(kind)).not_in_flat_format)
    mixer = {"kind": kind, **{k: v for k, v in flat.items() if k in own}}
    for k, v in flat.items():
        if k not in own and v != _LEGACY_MIXER_OPTIONS[k]:
            raise ValueError(f"{k}={v!r} is not an option of the {kind!r} mixer in the flat config format (its "
                             f"options there: {sorted(own)}); write the mixer's options inside its config instead")
    rest = {k: v for k, v in data.items() if k not in flat}
    return {**rest, "mixer": mixer}
