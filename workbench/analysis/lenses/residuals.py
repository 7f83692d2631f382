"""The residual stream a lens decodes: what block 0 reads, then what each block writes out.

    layer 0      blocks.0.hook_resid_pre       the embeddings (after ``ln_input`` in the Outlier Protected block)
    layer i ≥ 1  blocks.{i-1}.hook_resid_post  after i blocks; layer n_layers is what ``ln_final`` reads

``layer`` counts the blocks applied, so a table over layers 0 … n_layers reads as depth.
"""

from __future__ import annotations

import torch
from jaxtyping import Float


def residual_hooks(model) -> list[str]:
    """The ``n_layers + 1`` hook names whose activations the lenses decode, in order (module docstring)."""
    n = model.cfg.n_layers
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n)]


def check_layer(model, layer: int) -> int:
    """``layer`` in 0 … n_layers (negative counts from the end, −1 the final stream); ValueError otherwise."""
    n = model.cfg.n_layers
    if not isinstance(layer, int) or isinstance(layer, bool) or not -(n + 1) <= layer <= n:
        raise ValueError(f"layer must be an int in 0 … {n} (0: the embeddings, i: after block i − 1; negative "
                         f"counts from the end), got {layer!r}")
    return layer % (n + 1)


@torch.no_grad()
def residual_stream(model, tokens) -> Float[torch.Tensor, "layer batch pos d_model"]:
    """The residual stream at every layer 0 … n_layers (module docstring) for ``tokens`` ``[batch, pos]``, from one
    run of the model that caches nothing else."""
    tokens = model.check_tokens(tokens)
    names = residual_hooks(model)
    wanted = set(names)
    _, cache = model.run_with_cache(tokens, return_type=None, names_filter=lambda name: name in wanted)
    return torch.stack([cache[name] for name in names])
