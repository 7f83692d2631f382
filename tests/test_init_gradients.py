"""At initialisation the loss reaches every parameter of every mixer: a memory whose read-out starts so small
that its gradients vanish (the FWM under N(0, 0.02²): ~1e-17) never trains, and training then finds a way
around it that looks like a result. Checked on the recall-sized models the bundled recipes use."""

from __future__ import annotations

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.mixers import names
from workbench.tasks.associative_recall import AssociativeRecall
from workbench.training.trainer import masked_loss

TASK = AssociativeRecall(num_pairs=6, num_keys=32, num_values=32, num_queries=6)
# gradients relative to the model's largest. Live parameters get ≥ 1e-7 here, except Mamba-2's A_log (3e-10: it
# acts through dt ≈ 0.001–0.1 on a state built from 0.02-scale projections); the FWM's memory under the default
# init got ~1e-17
LIVE = 1e-12


def mixer_gradients(mixer: str) -> dict[str, float]:
    cfg = ModelConfig(d_vocab=TASK.d_vocab, d_model=64, n_layers=2, d_mlp=128, n_heads=2, d_head=32,
                      n_ctx=TASK.seq_len, mixer=mixer, chunk_size=8, seed=0)
    model = HookedFastWeightLM(cfg)
    masked_loss(model, TASK.sample(16, torch.Generator().manual_seed(0))).backward()
    grads = {n: float(p.grad.norm()) for n, p in model.named_parameters() if p.grad is not None}
    top = max(grads.values())
    return {n: g / top for n, g in grads.items() if ".attn." in n}


@pytest.mark.parametrize("mixer", names())
def test_every_mixer_parameter_gets_a_gradient_at_initialisation(mixer):
    grads = mixer_gradients(mixer)
    assert grads, f"{mixer}: no mixer parameter got a gradient"
    dead = {n: f"{g:.1e}" for n, g in grads.items() if not g > LIVE}
    assert not dead, f"{mixer}: these parameters get (relative) gradients ≤ {LIVE:g} at initialisation: {dead}"
