"""Lenses: decode every layer's residual stream into a next-token distribution.

``residuals``: the stream decoded at layers 0 (embeddings) … n_layers (what ``ln_final`` reads);
``logit_lens``: ``unembed(ln_final(h))`` at every layer (nostalgebraist 2020);
``tuned_lens``: :class:`TunedLens`, one affine translator per layer before the logit lens (Belrose et al.
2023), saved as safetensors + JSON; ``training``: :func:`train_tuned_lens` with the authors' recipe;
``metrics``: :func:`lens_table`, per-layer cross-entropy / perplexity and KL to the final layer.

The ``tuned-lens`` package itself is not a dependency: it reads transformers models (``model_surgery``) and
pulls in torchdata, wandb and accelerate; the method is small enough to write here on our hooks.
"""

from .logit_lens import decode, logit_lens
from .metrics import kl_to_final, lens_table
from .residuals import residual_hooks, residual_stream
from .training import LensTrainConfig, train_tuned_lens
from .tuned_lens import TunedLens, TunedLensConfig, tuned_lens

__all__ = ["LensTrainConfig", "TunedLens", "TunedLensConfig", "decode", "kl_to_final", "lens_table", "logit_lens",
           "residual_hooks", "residual_stream", "train_tuned_lens", "tuned_lens"]
