"""Model components, one concept per file."""

from .block import MIXERS, TransformerBlock
from .delta_net import DeltaNet
from .gated_delta_net import GatedDeltaNet
from .linear_attention import LinearAttention
from .softmax_attention import SoftmaxAttention

__all__ = ["MIXERS", "TransformerBlock", "DeltaNet", "GatedDeltaNet", "LinearAttention", "SoftmaxAttention"]
