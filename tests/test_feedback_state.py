"""The state machinery for recurrences that feed back their output (``feeds_back_output``), on a toy
memory registered from this file: states at any position and both patch modes are exact without any
code that knows the memory, and recurrences without the flag are called as before."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import pytest
import torch
from transformer_lens.hook_points import HookPoint

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis import fast_weights, patch_fast_weights
from workbench.kernels import RecurrenceOutput
from workbench.mixers import Mixer, MixerConfig, RecurrenceInputs, register, unregister
from workbench.mixers.state import expose_and_patch, feeds_back_output, previous_output


@dataclass(frozen=True)
class EchoConfig(MixerConfig):
    """S_t = S_{t-1} + k_t v_tᵀ, y_t = S_tᵀ (q_t + tanh(y_{t-1})): the query hears the last output."""

    kind: ClassVar[str] = "toy_echo"


class EchoRule:
    feeds_back_output = True

    def run(self, inputs, *, initial_state=None, previous_output=None, chunk_size=64, backend="chunk",
            output_final_state=False, output_chunk_states=False, output_delta=False):
        b, t_len, h, d = inputs.k.shape
        S = torch.zeros(b, h, d, d) if initial_state is None else initial_state
        y = torch.zeros(b, h, d) if previous_output is None else previous_output
        outs, snaps = [], []
        for t in range(t_len):
            if t % chunk_size == 0:
                snaps.append(S)
            S = S + torch.einsum("bhk,bhv->bhkv", inputs.k[:, t], inputs.v[:, t])
            y = self.read(inputs.position(t), S, y)
            outs.append(y)
        return RecurrenceOutput(torch.stack(outs, 1), S if output_final_state else None,
                                torch.stack(snaps, 1) if output_chunk_states else None)

    def read(self, x, state, previous_output=None):
        y_prev = torch.zeros_like(x["q"]) if previous_output is None else previous_output
        return torch.einsum("...k,...kv->...v", x["q"] + torch.tanh(y_prev), state)

    effective_attention = None


class EchoMemory(Mixer):
    Config = EchoConfig
    recurrence = EchoRule()
    input_hooks = ("hook_q", "hook_k", "hook_v")

    def __init__(self, cfg, model, qk_norm=False):
        super().__init__(cfg, model, qk_norm)
        self.add_qkvo_(bias=False)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_state, self.hook_z = HookPoint(), HookPoint()

    def recurrence_inputs(self, get):
        return RecurrenceInputs(dict(q=get("hook_q"), k=get("hook_k"), v=get("hook_v")))

    def forward(self, x):
        q, k, v = (hook(torch.einsum("bpm,hmd->bphd", x, W) * 0.5) for hook, W in
                   ((self.hook_q, self.W_Q), (self.hook_k, self.W_K), (self.hook_v, self.W_V)))
        inputs = RecurrenceInputs(dict(q=q, k=k, v=v))
        z, _, _ = expose_and_patch(self, inputs, self.recurrence.run(inputs, chunk_size=self.model_cfg.chunk_size))
        return torch.einsum("bphd,hdm->bpm", self.hook_z(z), self.W_O)


@pytest.fixture
def echo():
    register(EchoMemory)
    yield HookedFastWeightLM(ModelConfig(d_vocab=23, d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=24,
                                         n_ctx=32, chunk_size=4, init_std=0.3, mixer="toy_echo")).eval()
    unregister("toy_echo")


TOKENS = torch.randint(0, 23, (2, 11), generator=torch.Generator().manual_seed(1))


def loop(q, k, v, S=None, y=None, start=0):
    """The textbook recurrence from position ``start``: (states, outputs), float64."""
    q, k, v = q.double(), k.double(), v.double()
    S = torch.zeros(q.shape[0], q.shape[2], q.shape[3], v.shape[3], dtype=torch.float64) if S is None else S.double()
    y = torch.zeros_like(v[:, 0]) if y is None else y.double()
    states, outs = [], []
    for t in range(start, q.shape[1]):
        S = S + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        y = torch.einsum("bhk,bhkv->bhv", q[:, t] + torch.tanh(y), S)
        states.append(S)
        outs.append(y)
    return torch.stack(states, 1), torch.stack(outs, 1)


def test_the_flag_and_the_previous_output_helper():
    out = torch.arange(6.0).view(1, 3, 1, 2)
    assert feeds_back_output(EchoRule()) and not feeds_back_output(object())
    assert previous_output(EchoRule(), out, 0) == {"previous_output": None}
    assert torch.equal(previous_output(EchoRule(), out, 2)["previous_output"], out[:, 1])
    assert previous_output(object(), out, 2) == {}


def test_states_and_both_patches_are_exact_for_a_memory_that_feeds_back_its_output(echo):
    _, cache = echo.run_with_cache(TOKENS)
    q, k, v = (cache[f"blocks.0.attn.hook_{n}"] for n in "qkv")
    states, outs = loop(q, k, v)
    assert rel_err(cache["blocks.0.attn.hook_z"], outs) < 1e-5
    assert rel_err(fast_weights(echo, TOKENS, 0, [0, 3, 4, 6, 10]), states[:, [0, 3, 4, 6, 10]]) < 1e-5
    for p in (3, 4, 6):  # the last position of a chunk, a chunk start, inside a chunk
        _, ro = patch_fast_weights(echo, TOKENS, 0, p, lambda S: -S, mode="readout", return_cache=True)
        z = ro["blocks.0.attn.hook_z"]
        read = torch.einsum("bhk,bhkv->bhv", q[:, p].double() + torch.tanh(outs[:, p - 1]), -states[:, p])
        assert rel_err(z[:, p], read) < 1e-5 and torch.equal(z[:, p + 1:], cache["blocks.0.attn.hook_z"][:, p + 1:])
        _, ca = patch_fast_weights(echo, TOKENS, 0, p, lambda S: -S, mode="carry", return_cache=True)
        _, rest = loop(q, k, v, S=-states[:, p], y=read, start=p + 1)
        assert rel_err(ca["blocks.0.attn.hook_z"][:, p], read) < 1e-5
        assert rel_err(ca["blocks.0.attn.hook_z"][:, p + 1:], rest) < 1e-5
