"""Sequence mixers, one module per kind of memory, all on one interface (:mod:`.base`).

    softmax       causal softmax attention (no fast weights)
    linear        the sum rule with a feature map (Schlag et al. 2021)
    delta         DeltaNet, the delta rule
    gated_delta   Gated DeltaNet, the delta rule with a decay
    kda           Kimi Delta Attention: the delta rule with a decay per key channel
    gla           Gated Linear Attention: the sum rule with a decay per key channel (fla's GLA)
    mamba2        Mamba-2 (SSD): the sum rule with a decay per head, keys B, queries C, values dt·x
    mla           multi-head latent attention (DeepSeek-V2; Kimi Linear's attention layers), no fast weights
    rec_delta     Recurrent Delta Net: q, k, v, β also read the previous output (Irie et al. 2021)
    delta_rnn     Delta RNN: the fast net is itself recurrent, a second fast matrix (Irie et al. 2021)
    delta_lstm    Delta LSTM: an LSTM whose weights are fast weights (Irie et al. 2021)
    fwm           Fast Weight Memory, an LSTM writing a third-order fast tensor (Schlag et al. 2021)
    srwm          the modern self-referential weight matrix (Irie et al. 2022)

``names()`` lists the registered mixers; ``register`` adds one (see :mod:`.registry`).
"""

from .base import LinearSite, Mixer, MixerConfig, NotDefinedForMixer
from .registry import describe, mixer_class, mixer_config, mixer_fields, names, register, unregister
from .state import RecurrenceInputs, StateRequest, check_positions, run_steps, start_state, states_at
from .step import CannotStep, ModelStepCache, StepCache
from .softmax import SoftmaxAttention, SoftmaxConfig  # noqa: E402  (registration order = listing order)
from .linear import LinearAttention, LinearConfig  # noqa: E402
from .delta import DeltaConfig, DeltaNet  # noqa: E402
from .gated_delta import GatedDeltaConfig, GatedDeltaNet  # noqa: E402
from .kda import KDAConfig, KimiDeltaAttention  # noqa: E402
from .gla import GatedLinearAttention, GLAConfig  # noqa: E402
from .mamba2 import Mamba2, Mamba2Config  # noqa: E402
from .mla import MLAConfig, MultiHeadLatentAttention  # noqa: E402
from .rec_delta import RecDeltaConfig, RecurrentDeltaNet  # noqa: E402
from .delta_rnn import DeltaRNN, DeltaRNNConfig  # noqa: E402
from .delta_lstm import DeltaLSTM, DeltaLSTMConfig  # noqa: E402
from .fwm import FastWeightMemory, FWMConfig  # noqa: E402,F401
from .srwm import SRWM, SRWMConfig  # noqa: E402

__all__ = [
    "Mixer", "MixerConfig", "LinearSite", "NotDefinedForMixer", "RecurrenceInputs", "StateRequest",
    "CannotStep", "ModelStepCache", "StepCache",
    "check_positions", "run_steps", "start_state", "states_at", "register", "unregister", "names", "mixer_class",
    "mixer_config", "mixer_fields", "describe",
    "SoftmaxAttention", "SoftmaxConfig", "LinearAttention", "LinearConfig", "DeltaNet", "DeltaConfig",
    "GatedDeltaNet", "GatedDeltaConfig", "KimiDeltaAttention", "KDAConfig", "GatedLinearAttention", "GLAConfig", "Mamba2", "Mamba2Config",
    "MultiHeadLatentAttention", "MLAConfig",
]
