"""Generation with a recurrent state: stepping every mixer from its cache equals re-running the prefix (logits
≤ 1e-5, greedy tokens identical), for every registered mixer and for hybrids; hooks fire at every step;
sampling is seeded; bad inputs are clear errors; a mixer that cannot step falls back and says so."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig, load
from workbench.mixers import LinearAttention, names
from workbench.mixers.step import CannotStep

pytestmark = pytest.mark.integration  # end-to-end on every checkpoint and mixer: the full suite, not the fast loop

# one configuration per registered mixer, with the options that need carrying switched on (short convs,
# rotary positions, windows, grouped heads, input convolutions, sum normalisation, latent queries, …)
MIXERS = {
    "softmax": {"kind": "softmax", "rotary_base": 100.0, "n_kv_heads": 1, "window": 4, "output_gate": True},
    "linear": {"kind": "linear", "feature_map": "elu1", "sum_norm": True},
    "delta": {"kind": "delta", "conv_size": 4, "output_gate": True},
    "gated_delta": {"kind": "gated_delta", "conv_size": 3},
    "kda": {"kind": "kda", "conv_size": 2},
    "gla": {"kind": "gla", "conv_size": 4},
    "mamba2": {"kind": "mamba2", "conv_size": 4},
    "mla": {"kind": "mla", "kv_lora_rank": 8, "q_lora_rank": 8, "d_rope": 4},
    "rec_delta": {"kind": "rec_delta", "conv_size": 3},
    "delta_rnn": {"kind": "delta_rnn", "conv_size": 3},
    "delta_lstm": {"kind": "delta_lstm", "conv_size": 3},
    "fwm": {"kind": "fwm", "conv_size": 3, "n_reads": 2},
    "srwm": {"kind": "srwm", "conv_size": 3},
}
HYBRIDS = {
    "gated_delta+softmax+rec_delta": [MIXERS["gated_delta"], {"kind": "softmax", "rotary_base": 100.0}, MIXERS["rec_delta"]],
    "mamba2+mla+srwm": [MIXERS["mamba2"], MIXERS["mla"], MIXERS["srwm"]],
    "fwm+delta_lstm+linear": [MIXERS["fwm"], MIXERS["delta_lstm"], "linear"],
}


def model_of(mixer, positional="learned", n_layers=2) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=29, d_model=16, n_layers=n_layers, n_heads=2, d_head=8, d_mlp=24, n_ctx=40,
                      chunk_size=4, init_std=0.3, positional=positional, mixer=mixer)
    return HookedFastWeightLM(cfg).eval()


PROMPT = torch.randint(0, 29, (2, 6), generator=torch.Generator().manual_seed(1))


def test_mixer_only_and_mlp_only_blocks_step():  # a Nemotron-H-like stack (ModelConfig.block_kinds)
    cfg = ModelConfig(d_vocab=29, d_model=16, n_layers=4, n_heads=2, d_head=8, d_mlp=24, n_ctx=40, chunk_size=4,
                      init_std=0.3, positional="none", mlp="relu2", block_kinds=["mixer", "mlp", "mixer", "mixer_mlp"],
                      mixer=[MIXERS["mamba2"], None, {"kind": "softmax", "rotary_base": 100.0}, MIXERS["rec_delta"]])
    model = HookedFastWeightLM(cfg).eval()
    tokens, stepped, rerun = stepped_and_rerun(model, PROMPT, 6)
    assert (stepped - rerun).abs().max() <= 1e-5


def test_every_registered_mixer_is_covered():
    assert set(names()) <= set(MIXERS)


def stepped_and_rerun(model, prompt, n_new):
    """Greedy continuation by stepping with a cache; the logits of each step and of re-running the prefix."""
    cache = model.init_cache()
    tokens, new, stepped, rerun = prompt, prompt, [], []
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(new, past_kv_cache=cache)
            stepped.append(logits[:, -1])
            rerun.append(model(tokens)[:, -1])
            new = logits[:, -1].argmax(-1, keepdim=True)
            tokens = torch.cat([tokens, new], 1)
    return tokens, torch.stack(stepped, 1), torch.stack(rerun, 1)


@pytest.mark.parametrize("kind,positional", [(k, "none") for k in sorted(MIXERS)]
                         + [("softmax", "learned"), ("delta", "learned"), ("rec_delta", "learned")])
def test_stepping_equals_rerunning_the_prefix(kind, positional):
    model = model_of(MIXERS[kind], positional)
    tokens, stepped, rerun = stepped_and_rerun(model, PROMPT, 8)
    assert (stepped - rerun).abs().max() <= 1e-5, kind
    assert rerun.std() > 0.1  # logits that can tell tokens apart
    # the whole-sequence logits, too, from the cached prefill on
    full = model(tokens)[:, PROMPT.shape[1] - 1:-1]
    assert (stepped - full).abs().max() <= 1e-5
    assert torch.equal(model.generate(PROMPT, max_new_tokens=8, do_sample=False, verbose=False), tokens)


@pytest.mark.parametrize("name", sorted(HYBRIDS))
def test_hybrids_step_layer_by_layer(name):
    model = model_of(HYBRIDS[name], "none", n_layers=3)
    tokens, stepped, rerun = stepped_and_rerun(model, PROMPT, 10)
    assert (stepped - rerun).abs().max() <= 1e-5
    assert torch.equal(model.generate(PROMPT, max_new_tokens=10, do_sample=False, verbose=False), tokens)


CHECKPOINTS = sorted(p for p in (Path(__file__).resolve().parents[1] / "workbench" / "checkpoints").iterdir()
                     if (p / "config.json").is_file())


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.name)
def test_every_shipped_checkpoint_generates_as_it_reruns(path):
    model = load(path).eval()
    prompt = torch.tensor([[3, 40, 7, 50, 12, 33, 3]])
    cached = model.generate(prompt, max_new_tokens=5, do_sample=False, verbose=False)
    rerun = model.generate(prompt, max_new_tokens=5, do_sample=False, verbose=False, use_past_kv_cache=False)
    assert torch.equal(cached, rerun)
    assert len(model.to_str_tokens(cached)) == 12


def test_a_shipped_checkpoint_generates_as_it_reruns():
    model = load("workbench/checkpoints/toy-delta").eval()
    prompt = torch.tensor([[3, 40, 7, 50, 12, 33, 3]])
    a = model.generate(prompt, max_new_tokens=20, do_sample=False, verbose=False)
    b = model.generate(prompt, max_new_tokens=20, do_sample=False, verbose=False, use_past_kv_cache=False)
    assert torch.equal(a, b) and a.shape == (1, 27)
    assert a[0, 7] == 40  # it recalls the value bound to key 3


@pytest.mark.parametrize("kind", ["softmax", "delta", "rec_delta", "fwm", "srwm"])
def test_hooks_fire_at_every_step_with_one_position(kind):
    model = model_of(MIXERS[kind])
    seen = []
    record = lambda x, hook: seen.append((hook.name, x.shape[1]))  # noqa: E731
    with model.hooks(fwd_hooks=[("hook_embed", record), ("blocks.1.attn.hook_z", record)]):
        model.generate(PROMPT, max_new_tokens=5, do_sample=False, verbose=False)
    assert seen == [(n, 6) for n in ("hook_embed", "blocks.1.attn.hook_z")] + \
        [(n, 1) for _ in range(4) for n in ("hook_embed", "blocks.1.attn.hook_z")]


@pytest.mark.parametrize("kind", ["softmax", "gated_delta", "delta_rnn", "srwm"])
def test_a_patching_hook_applies_at_every_step_as_in_a_rerun(kind):
    model = model_of(MIXERS[kind])
    direction = torch.randn(16, generator=torch.Generator().manual_seed(3))

    def steer(resid, hook):
        return resid + 2 * direction

    plain = model.generate(PROMPT, max_new_tokens=8, do_sample=False, verbose=False)
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", steer)]):
        cached = model.generate(PROMPT, max_new_tokens=8, do_sample=False, verbose=False)
        rerun = model.generate(PROMPT, max_new_tokens=8, do_sample=False, verbose=False, use_past_kv_cache=False)
    assert torch.equal(cached, rerun) and not torch.equal(cached, plain)


def test_sampling_is_seeded_and_the_same_with_or_without_the_cache():
    model = model_of(MIXERS["gated_delta"])
    kw = dict(max_new_tokens=12, temperature=0.8, top_k=10, top_p=0.9, verbose=False)
    a = model.generate(PROMPT, seed=5, **kw)
    assert torch.equal(a, model.generate(PROMPT, seed=5, **kw))
    assert torch.equal(a, model.generate(PROMPT, seed=5, use_past_kv_cache=False, **kw))
    assert not torch.equal(a, model.generate(PROMPT, seed=6, **kw))
    g = torch.Generator().manual_seed(5)
    assert torch.equal(a, model.generate(PROMPT, generator=g, **kw))
    greedy = model.generate(PROMPT, max_new_tokens=12, do_sample=False, verbose=False)
    assert torch.equal(greedy, model.generate(PROMPT, max_new_tokens=12, top_k=1, seed=0, verbose=False))
    assert torch.equal(greedy, model.generate(PROMPT, max_new_tokens=12, temperature=0.0, verbose=False))


def test_stop_tokens_end_each_sequence_and_pad_it():
    model = model_of(MIXERS["delta"])
    free = model.generate(PROMPT, max_new_tokens=12, do_sample=False, verbose=False)
    stop = int(free[0, 8])  # a token the first sequence produces
    out = model.generate(PROMPT, max_new_tokens=12, do_sample=False, verbose=False, eos_token_id=stop)
    first = (out[0, 6:] == stop).nonzero()[0, 0] + 6
    assert torch.equal(out[0, :first + 1], free[0, :first + 1]) and (out[0, first:] == stop).all()
    ignored = model.generate(PROMPT, max_new_tokens=12, do_sample=False, verbose=False, eos_token_id=stop,
                             stop_at_eos=False)
    assert torch.equal(ignored, free)


def test_a_mixer_that_cannot_step_falls_back_and_says_so(monkeypatch):
    model = model_of(["delta", "linear"])
    expected = model.generate(PROMPT, max_new_tokens=6, do_sample=False, verbose=False)
    monkeypatch.setattr(LinearAttention, "supports_step", False)
    with pytest.raises(CannotStep, match="layer 1: the linear attention mixer"):
        model.init_cache()
    with pytest.warns(UserWarning, match="re-runs the whole prefix.*layer 1"):
        out = model.generate(PROMPT, max_new_tokens=6, do_sample=False, verbose=False)
    assert torch.equal(out, expected)


def test_bad_inputs_are_clear_errors():
    model = model_of(MIXERS["delta"])
    gen = lambda **kw: model.generate(PROMPT, verbose=False, **kw)  # noqa: E731
    for kw, match in [(dict(max_new_tokens=-1), "max_new_tokens"), (dict(temperature=-1.0), "temperature"),
                      (dict(top_k=0), "top_k"), (dict(top_p=0.0), "top_p"), (dict(freq_penalty=-1), "freq_penalty"),
                      (dict(return_type="logits"), "return_type"), (dict(seed=1, generator=torch.Generator()), "not both"),
                      (dict(eos_token_id=99), "eos_token_id"), (dict(max_new_tokens=40), "n_ctx"),
                      (dict(return_type="str"), "no tokenizer")]:
        with pytest.raises(ValueError, match=match):
            gen(**kw)
    with pytest.raises(ValueError, match="no tokenizer"):
        model.generate("hello", verbose=False)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.generate(torch.tensor([[1, 40]]), verbose=False)
    cache = model.init_cache()
    model(PROMPT, past_kv_cache=cache)
    with pytest.raises(ValueError, match="batch of 1"):
        model(PROMPT[:1, :1], past_kv_cache=cache)
    with pytest.raises(ValueError, match="return_type='logits'"):
        model(PROMPT[:, :1], past_kv_cache=cache, return_type="loss")
    with model.expose_states(0), pytest.raises(ValueError, match="expose_states"):
        model(PROMPT, past_kv_cache=model.init_cache())
    with pytest.raises(ValueError, match="longer than the model's n_ctx"):
        model(torch.zeros(2, 40, dtype=torch.long), past_kv_cache=cache)


def test_a_hook_delta_patch_with_a_cache_is_refused_and_works_without():
    model = model_of(MIXERS["delta"])
    zero = [("blocks.0.attn.hook_delta", lambda u, hook: u * 0)]
    with model.hooks(fwd_hooks=zero):
        with pytest.raises(ValueError, match="use_past_kv_cache=False"):
            model.generate(PROMPT, max_new_tokens=3, do_sample=False, verbose=False)
        patched = model.generate(PROMPT, max_new_tokens=3, do_sample=False, verbose=False, use_past_kv_cache=False)
    assert patched.shape == (2, 9)
