"""What every sequence mixer tells the rest of the workbench: the mixer interface.

A mixer is one ``nn.Module`` subclass of :class:`Mixer` plus its typed config (a subclass of
:class:`MixerConfig`), registered under a name with :func:`workbench.mixers.register`. The model, the
analyses, the app and the case studies ask the mixer through the methods below and never switch on
its class or name, so a new kind of memory is one new module:

    what it is           ``Config`` (typed, JSON round-trippable options), ``label()``
    how it is built      ``__init__(cfg, model_cfg, qk_norm=...)``; ``qk_norm_modules`` (the Outlier
                         Protected block's QK-norm: the block says *whether*, the mixer says *how*);
                         ``init_extra_`` (initialisation beyond the model's default)
    its fast weights     ``recurrence`` (None: no fast-weight state), ``d_k``/``d_v`` (the state is
                         ``[d_k, d_v]`` per head), ``input_hooks`` and ``recurrence_inputs`` (what the
                         kernel sees, read back from a cache), ``state_request`` (set by
                         ``HookedFastWeightLM.expose_states``); a recurrence whose inputs at t depend on
                         its previous output y_{t-1} sets ``feeds_back_output = True`` and takes
                         ``previous_output`` in ``run`` and ``read``: the state machinery passes it when it
                         restarts from a snapshot or a patched state (:mod:`.state`); anything else it
                         carries (a second fast matrix, a cell state) is packed into its state tensor;
                         ``key_value_state`` (None, or why the state is not a ``[d_k, d_v]`` matrix
                         read as Wᵀk, e.g. a third-order tensor: the recall probe and association
                         edits then refuse with that reason);
                         a recurrence that reads before it writes (o_t from W_{t-1}) sets ``read_offset = 1``
                         so a readout patch of W_t changes o_{t+1}
    what analyses need   ``effective_attention`` (exact, or :class:`NotDefinedForMixer`),
                         ``head_outputs`` (a read-out through the head's output path), ``linear_sites``
                         (the linear layers K-FAC may edit), ``qk_weights``/``ov_weights`` (the factors of
                         TransformerLens' QK and OV circuits where they exist, or why not), ``patch_sites``
                         (its state, write, β and decay hooks that activation patching may edit)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..components.norms import rms_normalize
from ..components.short_conv import ShortConv
from ..dataclass_io import check_keys
from ..kernels import RecurrenceOutput
from .state import Recurrence, RecurrenceInputs, feeds_back_output
from .step import StepCache

if TYPE_CHECKING:  # pragma: no cover
    from ..config import ModelConfig

CacheGetter = Callable[[str], Optional[torch.Tensor]]  # hook name relative to the mixer → cached tensor


class NotDefinedForMixer(ValueError):
    """An analysis asked a mixer for something its maths does not have (the message says why and what to use)."""


@dataclass(frozen=True)
class MixerConfig:
    """Options of one kind of mixer. Subclasses are frozen dataclasses with a class attribute ``kind`` (the
    registry name); ``to_dict`` writes ``{"kind": ..., **fields}``."""

    kind: ClassVar[str] = ""
    # options this mixer gained after the flat config.json format: a flat config's value for one of them was
    # not this mixer's (e.g. the flat "conv_size": 4 written for every mixer) and is not read into it
    not_in_flat_format: ClassVar[tuple[str, ...]] = ()

    def check(self, model: "ModelConfig", qk_norm: bool = False) -> None:
        """Validate against the model it sits in (its sizes; ``qk_norm``: the block asks for QK-norm); raise
        ValueError naming the field."""

    def d_k(self, d_head: int) -> int:
        """Width of the keys entering the recurrence (after any feature map)."""
        return d_head

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MixerConfig":
        data = {k: v for k, v in dict(data).items() if k != "kind"}
        return cls(**check_keys(cls, data))

    def replace(self, **changes: Any) -> "MixerConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class DeltaNetExtrasConfig(MixerConfig):
    """Options of a mixer that may take two parts of DeltaNet its authors' model does not have: ``conv_size``,
    DeltaNet's short causal convolution (taps; 0, the default, for none; where it goes is the mixer's choice:
    :meth:`Mixer.add_short_convs_` on named projections, or :meth:`Mixer.add_input_conv_`), and
    ``output_norm``, DeltaNet's per-head RMSNorm of the read-out before W_O (:meth:`Mixer.add_output_norm_`).
    Both off is the authors' model."""

    conv_size: int = 0
    output_norm: bool = False

    def check(self, model: "ModelConfig", qk_norm: bool = False) -> None:
        if not isinstance(self.conv_size, int) or isinstance(self.conv_size, bool) or self.conv_size < 0:
            raise ValueError(f"{self.kind}: conv_size must be an integer >= 0 (0: no short convolution), "
                             f"got {self.conv_size!r}")
        if not isinstance(self.output_norm, bool):
            raise ValueError(f"{self.kind}: output_norm must be a bool, got {self.output_norm!r}")


@dataclass(frozen=True)
class LinearSite:
    """A linear layer of a mixer as K-FAC sees it (names relative to the mixer, e.g. ``"W_Q"``):
    ``input_hook`` None means the mixer's input; ``layout`` as in :mod:`workbench.analysis.kfac.sites`."""

    kind: str
    param: str
    output_hook: str
    d_in: int
    d_out: int
    layout: str
    input_hook: Optional[str] = None


class Mixer(nn.Module):
    """Base class of every sequence mixer: ``forward(x [batch, pos, d_model]) -> [batch, pos, d_model]``."""

    Config: ClassVar[type[MixerConfig]] = MixerConfig
    recurrence: Optional[Recurrence] = None  # the fast-weight recurrence; None for a mixer without fast weights

    def __init__(self, cfg: MixerConfig, model: "ModelConfig", qk_norm: bool = False):
        super().__init__()
        if not isinstance(cfg, self.Config):
            raise TypeError(f"{type(self).__name__} needs a {self.Config.__name__}, got {type(cfg).__name__}")
        self.cfg, self.model_cfg = cfg, model
        self.n_heads, self.d_model, self.d_head = model.n_heads, model.d_model, model.d_head
        self.q_norm, self.k_norm = self.qk_norm_modules() if qk_norm else (nn.Identity(), nn.Identity())
        self.state_request = None  # set only inside HookedFastWeightLM.expose_states
        self.step_cache: Optional[StepCache] = None  # set only for one forward(..., past_kv_cache=...) call

    def add_qkvo_(self, bias: bool = True) -> None:
        """Register the usual projections, in this order (the seeded init draws them in it): W_Q, W_K, W_V
        ``[head, d_model, d_head]``, W_O ``[head, d_head, d_model]`` and (with ``bias``) b_O ``[d_model]``."""
        h, dm, dh = self.n_heads, self.d_model, self.d_head
        self.W_Q = nn.Parameter(torch.empty(h, dm, dh))
        self.W_K = nn.Parameter(torch.empty(h, dm, dh))
        self.W_V = nn.Parameter(torch.empty(h, dm, dh))
        self.W_O = nn.Parameter(torch.empty(h, dh, dm))
        if bias:
            self.b_O = nn.Parameter(torch.zeros(dm))

    def add_short_convs_(self, size: int, channels: dict[str, int]) -> None:
        """With ``size > 0``, DeltaNet's short convolution on each named projection (name → its channel count):
        ``conv_{name}`` (a depthwise causal convolution of ``size`` taps over positions) and
        ``hook_{name}_proj``, the projection before it. :meth:`short_conv` applies it; :meth:`proj_hook` names
        the hook a K-FAC site should read as the projection's output. Without it the mixer is unchanged."""
        self.short_convs = tuple(channels) if size > 0 else ()
        for name, n in channels.items():
            if size > 0:
                setattr(self, f"conv_{name}", ShortConv(n, size))
                setattr(self, f"hook_{name}_proj", HookPoint())  # the projection's output, before its conv

    def short_conv(self, name: str, y: torch.Tensor) -> torch.Tensor:
        """The projection ``y [batch, pos, ...]`` after its short convolution (``y`` itself without one); the
        trailing axes are the conv's channels, and ``hook_{name}_proj`` sees ``y`` first."""
        if name not in getattr(self, "short_convs", ()):
            return y
        y = getattr(self, f"hook_{name}_proj")(y)
        return self.causal_conv(getattr(self, f"conv_{name}"), y.flatten(2)).view_as(y)

    def proj_hook(self, name: str, otherwise: str) -> str:
        """The hook holding projection ``name``'s output: ``hook_{name}_proj`` with a short conv, else ``otherwise``."""
        return f"hook_{name}_proj" if name in getattr(self, "short_convs", ()) else otherwise

    def add_output_norm_(self, on: bool) -> None:
        """With ``on``, DeltaNet's per-head RMSNorm of the read-out before W_O (fla's ``o_norm``): a gain
        ``w_norm [d_v]`` (init 1) and ``hook_z_norm``, what W_O then reads (:meth:`norm_readout`)."""
        self.has_output_norm = on
        if on:
            self.w_norm = nn.Parameter(torch.ones(self.d_head))
            self.hook_z_norm = HookPoint()  # [batch, pos, head, d_v]  the read-out after the per-head RMSNorm

    def rms_readout(self, z: torch.Tensor) -> torch.Tensor:
        """Read-outs ``z [..., head, d_v]`` through the per-head RMSNorm (``add_output_norm_``), or unchanged."""
        if not getattr(self, "has_output_norm", False):
            return z
        return rms_normalize(z, self.model_cfg.norm_eps) * self.w_norm

    def norm_readout(self, z: torch.Tensor) -> torch.Tensor:
        """:meth:`rms_readout` in a run: fires ``hook_z_norm`` (only with the norm)."""
        return self.hook_z_norm(self.rms_readout(z)) if getattr(self, "has_output_norm", False) else z

    def readout_hook(self, otherwise: str) -> str:
        """The hook W_O reads: ``hook_z_norm`` with the output norm, else ``otherwise``."""
        return "hook_z_norm" if getattr(self, "has_output_norm", False) else otherwise

    def add_input_conv_(self, size: int) -> None:
        """With ``size > 0``, a depthwise causal convolution of ``size`` taps over the mixer input (the
        "short convolution" of DeltaNet, on x instead of on projections, for a mixer whose projections read
        something else, e.g. an LSTM's output): :meth:`conv_input` then returns ``hook_x_conv``
        ``[batch, pos, d_model]``. Without it the mixer is unchanged."""
        self.conv_x = ShortConv(self.d_model, size) if size > 0 else None
        if size > 0:
            self.hook_x_conv = HookPoint()  # [batch, pos, d_model]  the mixer input after its short convolution

    def conv_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input the mixer's projections read: ``x``, or its short convolution (``add_input_conv_``)."""
        conv = getattr(self, "conv_x", None)
        return x if conv is None else self.hook_x_conv(self.causal_conv(conv, x))

    # ------------------------------------------------------------------ what it is
    @classmethod
    def label(cls, cfg: MixerConfig) -> str:
        """A short human-readable name for plots and the app."""
        return cfg.kind

    @property
    def has_fast_weights(self) -> bool:
        return self.recurrence is not None

    # ------------------------------------------------------------------ how it is built
    def qk_norm_modules(self) -> tuple[nn.Module, nn.Module]:
        """The QK-norm of the Outlier Protected block for (queries, keys): RMS with a learnable gain each."""
        from ..components.norms import QKRMSNorm

        eps = self.model_cfg.norm_eps
        return QKRMSNorm(self.d_head, eps), QKRMSNorm(self.d_head, eps)

    def init_extra_(self, generator: torch.Generator) -> None:
        """Initialise parameters the model's default init skipped (see ``HookedFastWeightLM.init_weights``)."""

    skip_default_init: ClassVar[tuple[str, ...]] = ()  # parameter leaf names that init_extra_ sets

    def added_since_saved(self) -> dict[str, float]:
        """Parameters (names relative to the mixer) that checkpoints of an earlier format lack, with the
        constant that reproduces the model those checkpoints were saved from (default: none)."""
        return {}

    # ------------------------------------------------------------------ fast weights
    @property
    def d_k(self) -> int:
        return self.cfg.d_k(self.d_head)

    @property
    def d_v(self) -> int:
        """Width of a state row (the value width, plus any extra columns the recurrence keeps)."""
        return self.d_head

    def key_value_state(self) -> Optional[str]:
        """None when the state is a ``[d_k, d_v]`` matrix per head read as Wᵀk (what the recall probe and
        association edits assume); otherwise why it is not (they raise NotDefinedForMixer with it)."""
        return None

    state_axes: ClassVar[tuple[str, ...]] = ("d_k", "d_v")  # names of a head's state axes (plots, the app)

    write_hooks: ClassVar[tuple[str, ...]] = ()  # the hooks state_write reads

    def state_write(self, get: CacheGetter) -> tuple[torch.Tensor, torch.Tensor]:
        """The write into the state at every position as rank-one factors ``(keys [batch, pos, head, d_k],
        values [batch, pos, head, d_v])``: W_t = A_t(W_{t-1}) + k_t u_tᵀ, where A_t is what the recurrence does
        to the old state before it writes (the identity, a decay; for the delta rule the key removal is inside
        u_t = β_t(v_t − A_t(W_{t-1})ᵀ k_t)). Read from the run's hooks ``write_hooks``. The default: the write
        is not one rank-one matrix, or there is no state (NotDefinedForMixer saying which); WriteSAE
        (:mod:`workbench.analysis.dictionaries`) asks this and refuses with the reason."""
        if not self.has_fast_weights:
            raise NotDefinedForMixer(self._no_fast_weights() + ", so there is no state write to decompose")
        raise NotDefinedForMixer(
            f"the {self.label(self.cfg)} mixer ({type(self).__name__}) does not write its state as one rank-one "
            "matrix k_t u_tᵀ per position and head (a mixer that does overrides Mixer.state_write and write_hooks)")

    input_hooks: ClassVar[tuple[str, ...]] = ()  # the hooks recurrence_inputs reads

    def recurrence_inputs(self, get: CacheGetter) -> RecurrenceInputs:
        """The exact tensors this layer passes to its recurrence, rebuilt from its cached hooks."""
        raise NotDefinedForMixer(self._no_fast_weights())

    def _no_fast_weights(self) -> str:
        return f"a {self.label(self.cfg)} layer keeps no fast-weight state"

    def knockout_inputs(self, inputs: RecurrenceInputs, sources: list[int], head: int) -> Optional[RecurrenceInputs]:
        """The recurrence inputs with the content positions ``sources`` write into ``head``'s memory removed and
        everything else (keys, rates, decays, queries) held fixed, for a path knockout
        (:mod:`.knockout`). Default: the values ``v`` zeroed there — exactly zeroing the columns A[:, s] of the
        effective attention of a mixer linear in its values. None (the default without a field ``v``): this
        memory's writes are not set by an input value, so the knockout drops the writes themselves
        (W_s := W_{s-1}) and re-runs from there."""
        from .knockout import zero_at

        if "v" not in inputs.fields or inputs.v is None:
            return None
        return RecurrenceInputs({**inputs.fields, "v": zero_at(inputs.v, sources, head)})

    # ------------------------------------------------------------------ stepping (generation)
    supports_step: ClassVar[bool] = False  # True: forward continues from self.step_cache (see .step)

    def step_unsupported(self) -> Optional[str]:
        """None when this mixer continues a sequence from a :class:`~.step.StepCache`; otherwise why not
        (generation then re-runs the whole prefix for every new token, and says so)."""
        if self.supports_step:
            return None
        return (f"the {self.label(self.cfg)} mixer ({type(self).__name__}) cannot continue from a cache: its forward "
                "does not read a step cache (a mixer that does sets supports_step = True and uses Mixer.run_recurrence "
                "and Mixer.causal_conv; see workbench/mixers/step.py)")

    def step_position(self) -> int:
        """Position of the first input of this call in the whole sequence (0 without a step cache)."""
        return 0 if self.step_cache is None else self.step_cache.n_seen

    def causal_conv(self, conv: ShortConv, x: torch.Tensor) -> torch.Tensor:
        """``conv(x)`` ``[batch, pos, channels]``; with a step cache, continued from the last K − 1 inputs it
        saw (zeros at the start), exactly as the convolution of the whole sequence."""
        cache = self.step_cache
        if cache is None:
            return conv(x)
        history = cache.buffers.get(conv)
        if history is None:
            history = x.new_zeros(x.shape[0], conv.kernel_size - 1, x.shape[-1])
        full = torch.cat([history, x], dim=1)
        cache.buffers[conv] = full[:, full.shape[1] - history.shape[1]:]
        return conv(full)[:, history.shape[1]:]

    def carried_output(self, like: torch.Tensor) -> torch.Tensor:
        """The recurrence's output just before this call's first position ``[batch, head, d_out]``: zeros at
        the start of a sequence, else what the step cache carried (read it before ``run_recurrence``)."""
        last = None if self.step_cache is None else self.step_cache.last_output
        return torch.zeros_like(like) if last is None else last.to(like)

    def run_recurrence(self, inputs: RecurrenceInputs, *, restart: bool = False, **kwargs) -> RecurrenceOutput:
        """``self.recurrence.run`` with the model's chunk size and backend; with a step cache, from the carried
        state (and previous output) and saving the final ones. A call of one position with a step cache (a
        generated token) is one step of the recurrence, so it takes the recurrent form (``backend="reference"``:
        one write and one read, not a chunk padded around one position; equal to rounding, tests/test_generation.py).
        ``restart``: run again from the state this call started from (a mixer that re-runs its recurrence with
        patched inputs)."""
        cfg, cache = self.model_cfg, self.step_cache
        if cache is None:
            return self.recurrence.run(inputs, chunk_size=cfg.chunk_size, backend=cfg.backend, **kwargs)
        feeds_back = feeds_back_output(self.recurrence)
        if not restart:
            cache.buffers["recurrence_in"] = (cache.state, cache.last_output)
        state, last = cache.buffers["recurrence_in"]
        extra = {"previous_output": last} if feeds_back else {}
        backend = "reference" if inputs.n_pos == 1 else cfg.backend
        res = self.recurrence.run(inputs, chunk_size=cfg.chunk_size, backend=backend, initial_state=state,
                                  output_final_state=True, **extra, **kwargs)
        cache.state = res.final_state
        cache.last_output = res.output[:, -1] if feeds_back else None
        return res

    # ------------------------------------------------------------------ what analyses need
    effective_attention_hooks: ClassVar[tuple[str, ...]] = ()  # default: input_hooks

    def effective_attention(self, get: CacheGetter) -> torch.Tensor:
        """``[batch, head, pos, pos]`` (query, key) A with ``hook_z = A · hook_v`` exactly."""
        exact = getattr(self.recurrence, "effective_attention", None)
        if exact is None:
            raise NotDefinedForMixer(
                f"effective attention is not defined for the {self.label(self.cfg)} mixer: its output is not linear "
                "in the values; read its fast weights (model.fast_weights) or patch them (expose_states) instead")
        return exact(self.recurrence_inputs(get))

    def head_outputs(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Each head's contribution to the mixer output of a run, from its read-outs ``z [batch, pos, head,
        d_head]`` (``hook_z``) and the mixer input ``x [batch, pos, d_model]`` (for gates and skips):
        ``[batch, pos, head, d_model]``, no output bias. Σ_head + :meth:`output_bias` is the mixer output
        (exactly, for every mixer whose output is heads plus a bias; the rest is the mixer's own, e.g. FWM's LSTM
        state). A mixer whose output path is position-wise also takes any ``[..., head, d_head]`` with
        ``[..., d_model]`` (see :meth:`readout_outputs`)."""
        return torch.einsum("...hd,hdm->...hm", self.rms_readout(z), self.W_O)

    def readout_outputs(self, r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """What the output path makes of read-out vectors ``r [..., head, d_v]`` alone (e.g. a probe's Wᵀk) at
        positions whose mixer input is ``x [..., d_model]``: ``[..., head, d_model]``. The same as
        :meth:`head_outputs` for every mixer whose output path is position-wise (the default); a mixer whose
        output also depends on earlier positions through something other than its memory (Mamba-2's skip D ⊙ x
        after the short conv) leaves that part out here."""
        return self.head_outputs(r, x)

    def qk_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_Q, W_K), each ``[head, d_model, d_head]``, when this mixer's queries and keys are those linear maps of
        its input (biases aside, as in TransformerLens) and it mixes positions by a function of q·k alone, so
        ``W_Q W_Kᵀ`` is its QK circuit (TransformerLens' ``model.QK``); otherwise NotDefinedForMixer saying why."""
        raise NotDefinedForMixer(
            f"the {self.label(self.cfg)} mixer has no QK circuit: it does not mix positions by a function of "
            "x_q W_Q W_Kᵀ x_k alone (linear queries and keys compared by a dot product); "
            "model.effective_attention(tokens, layer) gives its exact mixing where that is defined")

    def ov_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(W_V ``[head, d_model, d_head]``, W_O ``[head, d_head, d_model]``) when each head's output is
        ``Σ_s A_ts x_s W_V W_O`` (biases aside) with weights A that do not depend on the values' path, so
        ``W_V W_O`` is its OV circuit (TransformerLens' ``model.OV``); otherwise NotDefinedForMixer saying why."""
        raise NotDefinedForMixer(
            f"the {self.label(self.cfg)} mixer has no OV circuit: its output is not a weighted sum of x_s W_V W_O "
            "over positions with weights independent of the values' path; "
            "cache.stack_head_results() gives each head's exact output instead")

    patch_hooks: ClassVar[dict[str, str]] = {}  # role ("write", "beta", "decay") → hook whose edit feeds the memory

    def patch_sites(self) -> dict[str, str]:
        """The fast-weight sites activation patching may edit, role → hook (relative to the mixer): ``state``
        (``hook_state``, inside ``HookedFastWeightLM.expose_states``) for every mixer with fast weights, and from
        :attr:`patch_hooks` ``write`` (what is written at t), ``beta`` (the write strength) and ``decay`` (the
        memory's decay), each ``[batch, pos, head, ...]``. Only hooks whose edit changes the memory are listed; a
        hook computed inside the recurrence (read-only) is not."""
        return {**({"state": "hook_state"} if self.has_fast_weights else {}), **self.patch_hooks}

    adds_beside_heads: ClassVar[bool] = False  # True: the output holds more than Σ head_outputs + output_bias

    def output_bias(self) -> Optional[torch.Tensor]:
        """The ``[d_model]`` bias added to the summed head outputs (default: the parameter ``b_O`` if the mixer
        has one). Whatever else a mixer adds to its output is what is left of it beside heads and bias."""
        return self._parameters.get("b_O")

    def linear_sites(self) -> list[LinearSite]:
        """The linear layers of this mixer K-FAC may edit (default: none)."""
        return []

    def extra_repr(self) -> str:
        return f"{self.label(self.cfg)}, heads={self.n_heads}, d_head={self.d_head}"
