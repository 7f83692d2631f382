"""Fast-weight recurrences, importable as ``workbench.kernels``.

Every kernel takes ``[batch, pos, head, dim]`` tensors, an explicit ``backend`` (``"reference"``: a
readable loop over positions; ``"chunk"``: chunkwise-parallel), and returns a
:class:`RecurrenceOutput` ``(output, final_state, chunk_states, delta)``. Derivations: README.md here.
"""

from ._common import BACKENDS, RecurrenceOutput
from ._triangular import solve_unit_lower
from .delta_rule import delta_rule, delta_rule_chunk, delta_rule_reference
from .fwm import fwm, fwm_reference
from .linear_attention import linear_attention, linear_attention_chunk, linear_attention_reference
from .rec_delta import rec_delta  # noqa: E402  (Recurrent Delta Net; reference only)
from .delta_rnn import delta_rnn  # noqa: E402  (Delta RNN; reference only)
from .delta_lstm import delta_lstm  # noqa: E402  (Delta LSTM; reference only)
from .srwm import srwm, srwm_reference, srwm_trace

__all__ = [
    "BACKENDS",
    "RecurrenceOutput",
    "delta_rule",
    "delta_rule_chunk",
    "delta_rule_reference",
    "fwm",
    "fwm_reference",
    "linear_attention",
    "linear_attention_chunk",
    "linear_attention_reference",
    "solve_unit_lower",
]
