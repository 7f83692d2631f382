"""The Overview page's lenses: what each layer of the model would predict along the sidebar's sequence, through
the logit lens and, once trained on a stream of the task's batches, the tuned lens."""

from __future__ import annotations

from typing import Optional

import pandas as pd

from ..analysis.lenses import LensTrainConfig, lens_table, train_tuned_lens
from .token_streams import TokenStream

MAX_LENS_STEPS = 1000


def lens_layers(model, tokens, stream: Optional[TokenStream] = None, steps: int = 0, seed: int = 0) -> pd.DataFrame:
    """:func:`~workbench.analysis.lenses.lens_table` on the one sequence ``tokens``; with a ``stream`` and
    ``steps`` > 0, a tuned lens trained on the stream's batches (the authors' recipe, ``steps`` steps) beside the
    logit lens. The model is not changed (the lens is trained and dropped here)."""
    if not isinstance(steps, int) or isinstance(steps, bool) or not 0 <= steps <= MAX_LENS_STEPS:
        raise ValueError(f"the number of training steps must be an integer in 0 … {MAX_LENS_STEPS}, got {steps!r}")
    tokens = model.check_tokens(tokens)
    if tokens.shape[1] < 2:
        raise ValueError("the lenses need a sequence of at least two tokens")
    lens = None
    if stream is not None and steps > 0:
        lens, _ = train_tuned_lens(model, stream.tensors(), LensTrainConfig(steps=steps, seed=seed), progress=False)
    return lens_table(model, tokens, lens)
