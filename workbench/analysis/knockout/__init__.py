"""Path knockout inside the recurrence: block what source positions write from being read at target positions,
in one layer and head, and the per-(source, target) effect on a metric (issue 15, item 3).

``knock_out`` gives the logits of one knockout; ``knockout_effects`` the (source × target) grid as a DataFrame;
``final_token_logprob`` (the default) and ``logit_difference`` metrics. See :mod:`.paths` for the two exact routes.
"""

from .effects import knockout_effects
from .metrics import final_token_logprob, logit_difference
from .paths import ROUTES, knock_out, knocked_readout

__all__ = ["ROUTES", "final_token_logprob", "knock_out", "knocked_readout", "knockout_effects", "logit_difference"]
