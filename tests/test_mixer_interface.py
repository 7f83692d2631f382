"""The mixer interface: a memory written in this file, registered from here, gets every workbench
feature without a change to the package; hybrid models (one mixer per layer) work end to end; and no
code outside a mixer's own module switches on a mixer's class or name."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from transformer_lens.hook_points import HookPoint

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig, load, save
from workbench.analysis import edit_association, effective_attention, fast_weights, patch_fast_weights
from workbench.analysis.kfac import KFACConfig, collect_kfac, linear_sites
from workbench.analysis.outliers import state_statistics
from workbench.mixers import (Mixer, MixerConfig, NotDefinedForMixer, RecurrenceInputs, names, register, run_steps,
                              unregister)
from workbench.mixers.state import expose_and_patch

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- a memory that is not one of ours
@dataclass(frozen=True)
class LeakyConfig(MixerConfig):
    """A leaky sum rule: S_t = λ S_{t-1} + k_t v_tᵀ, o_t = S_tᵀ q_t, with one fixed λ for every head."""

    kind: ClassVar[str] = "toy_leaky"
    leak: float = 0.8

    def check(self, model, qk_norm: bool = False) -> None:
        if not 0 < self.leak <= 1:
            raise ValueError(f"LeakyConfig.leak must be in (0, 1], got {self.leak!r}")


class LeakyRule:
    def __init__(self, leak: float):
        self.leak = leak

    def run(self, inputs, *, initial_state=None, chunk_size=64, backend="chunk", output_final_state=False,
            output_chunk_states=False, output_delta=False):
        b, _, h, dk = inputs.k.shape
        state = torch.zeros(b, h, dk, inputs.v.shape[-1]) if initial_state is None else initial_state
        return run_steps(self.write, self.read, inputs, state, chunk_size, output_final_state, output_chunk_states)

    def write(self, state, x):
        return self.leak * state + torch.einsum("bhk,bhv->bhkv", x["k"].float(), x["v"].float())

    def read(self, x, state):
        return torch.einsum("...k,...kv->...v", x["q"].float(), state.float())

    def effective_attention(self, inputs):
        t = inputs.n_pos
        pos = torch.arange(t, dtype=torch.float64)
        decay = (self.leak ** (pos[:, None] - pos[None, :]).clamp_min(0)).tril()
        q, k = inputs.q.double().transpose(1, 2), inputs.k.double().transpose(1, 2)
        return ((q @ k.transpose(-1, -2)) * decay).float()


class LeakyMemory(Mixer):
    Config = LeakyConfig
    recurrence = LeakyRule(1.0)  # per instance: LeakyRule(cfg.leak)
    input_hooks = ("hook_q", "hook_k", "hook_v")

    def __init__(self, cfg, model, qk_norm=False):
        super().__init__(cfg, model, qk_norm)
        self.add_qkvo_(bias=False)
        self.recurrence = LeakyRule(cfg.leak)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()  # [batch, pos, head, d_head]
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_k, d_v]
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]

    def recurrence_inputs(self, get):
        return RecurrenceInputs(dict(q=get("hook_q"), k=get("hook_k"), v=get("hook_v")))

    def linear_sites(self):
        from workbench.mixers import LinearSite

        hd = self.n_heads * self.d_head
        return [LinearSite(n.lower(), f"W_{n}", f"hook_{n.lower()}", self.d_model, hd, "head_in_out") for n in "QKV"] + [
            LinearSite("o", "W_O", None, hd, self.d_model, "head_out", input_hook="hook_z")]

    def forward(self, x):
        q, k, v = (hook(torch.einsum("bpm,hmd->bphd", x, W)) for hook, W in
                   ((self.hook_q, self.W_Q), (self.hook_k, self.W_K), (self.hook_v, self.W_V)))
        inputs = RecurrenceInputs(dict(q=q, k=k, v=v))
        res = self.recurrence.run(inputs, chunk_size=self.model_cfg.chunk_size)
        z, _, _ = expose_and_patch(self, inputs, res)
        return torch.einsum("bphd,hdm->bpm", self.hook_z(z), self.W_O)


@dataclass(frozen=True)
class SquashConfig(MixerConfig):
    """A memory whose read-out is not linear in the values: o_t = tanh(S_tᵀ q_t)."""

    kind: ClassVar[str] = "toy_squash"


class SquashMemory(LeakyMemory):
    Config = SquashConfig

    def __init__(self, cfg, model, qk_norm=False):
        Mixer.__init__(self, cfg, model, qk_norm)
        self.add_qkvo_(bias=False)
        self.recurrence = SquashRule(1.0)
        self.hook_q, self.hook_k, self.hook_v = HookPoint(), HookPoint(), HookPoint()
        self.hook_state, self.hook_z = HookPoint(), HookPoint()


class SquashRule(LeakyRule):
    effective_attention = None  # not linear in the values

    def read(self, x, state):
        return torch.tanh(super().read(x, state))


@pytest.fixture
def toy():
    register(LeakyMemory)
    register(SquashMemory)
    yield
    unregister("toy_leaky")
    unregister("toy_squash")


def toy_model(mixer="toy_leaky", **kw) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=24, n_ctx=32, chunk_size=4,
                      init_std=0.3, mixer=mixer, **kw)
    return HookedFastWeightLM(cfg).eval()


TOKENS = torch.randint(0, 23, (2, 13), generator=torch.Generator().manual_seed(0))


def loop_states(cache, layer: int, leak: float) -> torch.Tensor:
    """Every W_t by the textbook recurrence, in float64: [batch, pos, head, d_k, d_v]."""
    a = f"blocks.{layer}.attn."
    q, k, v = (cache[a + f"hook_{n}"].double() for n in "qkv")
    S = torch.zeros(k.shape[0], k.shape[2], k.shape[3], v.shape[3], dtype=torch.float64)
    out = []
    for t in range(k.shape[1]):
        S = leak * S + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        out.append(S)
    return torch.stack(out, 1)


def test_a_new_memory_registered_in_a_test_gets_every_feature(toy, tmp_path):
    assert "toy_leaky" in names() and "toy_leaky" in names(fast_weights=True)
    model = toy_model(mixer={"kind": "toy_leaky", "leak": 0.7})
    # run_with_cache with its hooks; the read-out is the textbook recurrence's
    logits, cache = model.run_with_cache(TOKENS)
    for i in range(2):
        for n in ("q", "k", "v", "z"):
            assert f"blocks.{i}.attn.hook_{n}" in cache
        states = loop_states(cache, i, 0.7)
        q = cache[f"blocks.{i}.attn.hook_q"].double()
        assert rel_err(cache[f"blocks.{i}.attn.hook_z"], torch.einsum("bphk,bphkv->bphv", q, states)) < 1e-5
    # fast weights at chosen positions (chunk snapshots + a short recompute)
    W = fast_weights(model, TOKENS, 1, [0, 5, -1])
    want = loop_states(cache, 1, 0.7)[:, [0, 5, 12]]
    assert W.shape == (2, 3, 2, 8, 8) and rel_err(W, want) < 1e-5
    # state patching, readout: only that position's output changes
    zero = lambda S: torch.zeros_like(S)  # noqa: E731
    _, patched = patch_fast_weights(model, TOKENS, 0, 6, zero, mode="readout", return_cache=True)
    z0, z1 = cache["blocks.0.attn.hook_z"], patched["blocks.0.attn.hook_z"]
    assert torch.equal(z0[:, :6], z1[:, :6]) and torch.equal(z0[:, 7:], z1[:, 7:])
    assert z1[:, 6].abs().max() == 0
    # carry: every later position is recomputed from the edited state (here: a memory wiped at t = 6)
    _, carried = patch_fast_weights(model, TOKENS, 0, 6, zero, mode="carry", return_cache=True)
    q, k, v = (cache[f"blocks.0.attn.hook_{n}"].double() for n in "qkv")
    S = torch.zeros(2, 2, 8, 8, dtype=torch.float64)
    for t in range(7, 13):
        S = 0.7 * S + torch.einsum("bhk,bhv->bhkv", k[:, t], v[:, t])
        assert rel_err(carried["blocks.0.attn.hook_z"][:, t], torch.einsum("bhk,bhkv->bhv", q[:, t], S)) < 1e-5
    # an association edit through the same path
    logits_e = edit_association(model, TOKENS, 1, 4, torch.randn(2, 8), torch.randn(2, 8))
    assert logits_e.shape == logits.shape and not torch.equal(logits_e[:, 5:], logits[:, 5:])
    # effective attention: exact for this memory
    A = effective_attention(model, TOKENS, 1)
    z = torch.einsum("bhqk,bkhd->bqhd", A, cache["blocks.1.attn.hook_v"])
    assert rel_err(z, cache["blocks.1.attn.hook_z"]) < 1e-5
    # K-FAC sites, and factors collected through them
    sites = linear_sites(model, layers=[0])
    assert {s.param for s in sites} >= {"blocks.0.attn.W_Q", "blocks.0.attn.W_O", "blocks.0.mlp.W_in"}
    assert all(s.input_hook in model.hook_dict and s.output_hook in model.hook_dict for s in sites)
    factors = collect_kfac(model, [TOKENS], KFACConfig(sites=("blocks.0.attn.W_V", "blocks.0.attn.W_O")),
                           progress=False)
    assert set(factors) == {"blocks.0.attn.W_V", "blocks.0.attn.W_O"}
    # fast-weight state statistics
    stats = state_statistics(model, [TOKENS], positions=[3, 9], progress=False)
    assert set(stats.layer) == {0, 1} and stats.frobenius.gt(0).all()
    # a checkpoint round trip
    save(model, tmp_path)
    assert '"kind": "toy_leaky"' in (tmp_path / "config.json").read_text()
    again = load(tmp_path)
    assert again.cfg == model.cfg and torch.equal(again(TOKENS), model(TOKENS))


def test_effective_attention_is_a_clear_error_where_the_output_is_not_linear_in_the_values(toy):
    model = toy_model(mixer="toy_squash")
    with pytest.raises(NotDefinedForMixer, match="not linear in the values|not defined"):
        effective_attention(model, TOKENS, 0)
    assert fast_weights(model, TOKENS, 0, [2]).shape == (2, 1, 2, 8, 8)  # its fast weights still read


def test_a_new_mixer_appears_in_the_apps_mixer_choice(toy):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.sidebar.radio(key="model_source").set_value("Fresh model (random init)").run()
    box = at.sidebar.selectbox(key="fresh_mixer")
    assert "toy_leaky" in box.options or any("toy_leaky" in o for o in box.options)
    box.set_value("toy_leaky").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert '"kind": "toy_leaky"' in at.sidebar.text_area(key="fresh_config").value


# ---------------------------------------------------------------------- hybrid models
def hybrid() -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=23, d_model=16, n_layers=3, n_heads=2, d_head=8, d_mlp=24, n_ctx=32, chunk_size=4,
                      mixer=[{"kind": "gated_delta", "output_gate": True}, "linear", "softmax"])
    return HookedFastWeightLM(cfg).eval()


def test_a_hybrid_model_runs_every_analysis_and_says_which_layers_have_fast_weights(tmp_path):
    model = hybrid()
    assert model.fast_weight_layers == [0, 1]
    assert model.cfg.mixer_label == "Gated DeltaNet, linear attention, softmax attention"
    _, cache = model.run_with_cache(TOKENS)
    assert "blocks.0.attn.hook_log_decay" in cache and "blocks.2.attn.hook_pattern" in cache
    for layer in range(3):  # exact effective attention in every layer, whatever its mixer
        A = effective_attention(model, TOKENS, layer)
        z = torch.einsum("bhqk,bkhd->bqhd", A, cache[f"blocks.{layer}.attn.hook_v"])
        assert rel_err(z, cache[f"blocks.{layer}.attn.hook_z"]) < 1e-4
    assert fast_weights(model, TOKENS, 0, [3]).shape == (2, 1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"layer 2 \(softmax attention\) keeps no fast-weight matrix; layers \[0, 1\]"):
        fast_weights(model, TOKENS, 2, [3])
    with model.expose_states([4]):  # every fast-weight layer, and only those
        _, exposed = model.run_with_cache(TOKENS)
    assert {n for n in exposed if n.endswith("hook_state")} == {"blocks.0.attn.hook_state", "blocks.1.attn.hook_state"}
    kinds = {(s.layer, s.kind) for s in linear_sites(model)}
    assert (0, "beta") in kinds and (2, "beta") not in kinds and (2, "o") in kinds
    save(model, tmp_path)
    again = load(tmp_path)
    assert again.cfg == model.cfg and torch.equal(again(TOKENS), model(TOKENS))


def test_mixer_configs_round_trip_and_old_flat_configs_still_load():
    cfg = ModelConfig(d_vocab=11, n_layers=2, mixer=["delta", {"kind": "linear", "feature_map": "dpfp", "dpfp_nu": 2}])
    assert ModelConfig.from_json(cfg.to_json()) == cfg
    assert ModelConfig(d_vocab=11, mixer=["delta", "delta"]).mixer == ModelConfig(d_vocab=11).mixer  # one for all
    flat = {"d_vocab": 11, "mixer": "linear", "feature_map": "elu1", "sum_norm": True, "qk_norm": "l2",
            "conv_size": 4, "allow_neg_eigval": False, "output_gate": False, "dpfp_nu": 1, "favor_features": 32}
    old = ModelConfig.from_dict(flat)
    assert old.mixer.to_dict() == {"kind": "linear", "feature_map": "elu1", "dpfp_nu": 1, "favor_features": 32,
                                   "sum_norm": True}
    with pytest.raises(ValueError, match="conv_size=0 is not an option of the 'linear' mixer"):
        ModelConfig.from_dict({**flat, "conv_size": 0})
    with pytest.raises(ValueError, match="lists 3 mixers for n_layers = 2"):
        ModelConfig(d_vocab=11, mixer=["delta"] * 3)
    with pytest.raises(ValueError, match="unknown DeltaConfig keys"):
        ModelConfig(d_vocab=11, mixer={"kind": "delta", "feature_map": "dpfp"})
    with pytest.raises(ValueError, match="'kind'"):
        ModelConfig(d_vocab=11, mixer={"conv_size": 2})


def test_every_shipped_checkpoint_loads_from_its_flat_config():
    root = ROOT / "workbench" / "checkpoints"
    for d in sorted(p for p in root.iterdir() if (p / "config.json").is_file()):
        model = load(d)
        assert model.cfg.mixer.kind in names()
        assert model.cfg == ModelConfig.from_json(model.cfg.to_json())


# ---------------------------------------------------------------------- nobody else switches on a mixer
SWITCHES = [
    re.compile(r"isinstance\([^)]*\b(SoftmaxAttention|LinearAttention|DeltaNet|GatedDeltaNet)\b"),
    re.compile(r"(==|!=)\s*[\"'](softmax|linear|delta|gated_delta)[\"']"),
    re.compile(r"[\"'](softmax|linear|delta|gated_delta)[\"']\s*(==|!=)"),
    re.compile(r"\bin\s*[(\[{]\s*[\"'](softmax|linear|delta|gated_delta)[\"']\s*,"),
    re.compile(r"\{\s*[\"'](softmax|linear|delta|gated_delta)[\"']\s*:"),
    re.compile(r"\.mixer\s*(==|!=)\s*[\"']"),
    re.compile(r"\.mixer\s+(not\s+)?in\s*[(\[{]\s*[\"']"),
    re.compile(r"\bMIXERS\s*=\s*[({\[]"),
]
# The retrieval model of Schlag et al.'s capacity experiments (workbench/retrieval*, its case study) is a
# different model family with its own vocabulary: its "softmax" is a feature map and "sum"/"delta" its
# update rules, not names of workbench.mixers.
NOT_MIXER_NAMES = ("retriev", "case_studies/capacity/")


def test_no_file_outside_a_mixer_switches_on_a_mixer_class_or_name():
    files = [*ROOT.glob("workbench/**/*.py"), *ROOT.glob("case_studies/**/*.py"), ROOT / "app.py",
             *ROOT.glob("app_pages/*.py")]
    mixers_dir = ROOT / "workbench" / "mixers"
    bad = []
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        if mixers_dir in f.parents or any(s in rel for s in NOT_MIXER_NAMES) or not f.is_file():
            continue
        for n, line in enumerate(f.read_text().splitlines(), 1):
            if any(p.search(line) for p in SWITCHES):
                bad.append(f"{rel}:{n}: {line.strip()}")
    assert not bad, "switches on a mixer outside workbench/mixers:\n" + "\n".join(bad)


def test_the_analyses_run_on_a_hybrid_model():
    from workbench.analysis import induction_score, probe_associations
    from workbench.analysis.outliers import outlier_table, trace_outliers

    model = hybrid()
    df = probe_associations(model, TOKENS, 1, [(1, 2), (4, 5)])
    assert len(df) and df.fidelity.notna().all()
    with pytest.raises(ValueError, match="layers \\[0, 1\\] have them"):
        probe_associations(model, TOKENS, 2, [(1, 2)])
    assert induction_score(effective_attention(model, TOKENS, 0), TOKENS).shape == (2, 2)
    stats = trace_outliers(model, [TOKENS], sites=("q", "k", "v", "resid_post"), progress=False)
    assert set(outlier_table(stats).layer) == {0, 1, 2}
    states = state_statistics(model, [TOKENS], positions=[2, 8], progress=False)
    assert set(states.layer) == {0, 1}
