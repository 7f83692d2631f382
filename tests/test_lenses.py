"""Lenses (workbench.analysis.lenses): the logit lens against the model's own path (``stop_at_layer``, the final
logits, transformers' hidden states on an imported checkpoint), the tuned lens with identity translators against
the logit lens (exactly), training against held-out KL, the per-layer table against ``held_out_perplexity``, files
and bad input."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from workbench import ModelConfig, load
from workbench.analysis.lenses import (LensTrainConfig, TunedLens, TunedLensConfig, decode, kl_to_final, lens_table,
                                       logit_lens, residual_hooks, residual_stream, train_tuned_lens, tuned_lens)
from workbench.analysis.memorization.perplexity import held_out_perplexity
from workbench.mixers import names
from workbench.model import HookedFastWeightLM
from pathlib import Path
from workbench.plots import lens_by_layer
from workbench.tasks import task_from_dict

TOY = Path(__file__).resolve().parents[1] / "workbench" / "checkpoints" / "toy-delta"
BASE = dict(d_vocab=32, d_model=32, n_heads=2, d_head=16, n_layers=2, d_mlp=64, n_ctx=32)


def tokens_for(model, seed: int = 0, batch: int = 2, pos: int = 12) -> torch.Tensor:
    return torch.randint(0, model.cfg.d_vocab, (batch, min(pos, model.cfg.n_ctx)),
                         generator=torch.Generator().manual_seed(seed))


def small(mixer: str, **kw) -> HookedFastWeightLM:
    return HookedFastWeightLM(ModelConfig(mixer=mixer, **{**BASE, **kw})).eval().to(torch.float64)


def randomised(lens: TunedLens, seed: int = 0, scale: float = 0.1) -> TunedLens:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in lens.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return lens


@pytest.fixture(scope="module")
def toy():
    """The bundled 2-layer DeltaNet and MQAR batches: 16 to train on, 4 held out (other seeds)."""
    model = load(TOY)
    task = task_from_dict(json.loads((TOY / "recipe.json").read_text())["task"])
    train = [task.sample(16, torch.Generator().manual_seed(100 + i)).tokens for i in range(16)]
    held = [task.sample(16, torch.Generator().manual_seed(900 + i)).tokens for i in range(4)]
    return model, train, held


# ---------------------------------------------------------------------- every mixer, small random models (float64)
@pytest.mark.parametrize("mixer", names())
def test_logit_lens_and_identity_tuned_lens_on_every_mixer(mixer):
    torch.set_num_threads(1)
    model = small(mixer)
    tokens = tokens_for(model)
    lens_logits = logit_lens(model, tokens)  # [layer, batch, pos, vocab]
    n = model.cfg.n_layers
    assert lens_logits.shape == (n + 1, *tokens.shape, model.cfg.d_vocab)
    assert torch.equal(lens_logits[n], model(tokens))  # the last layer is the model's output
    for layer in range(n):  # an independent path to the stream: the model stopped before block `layer`
        expected = model.unembed(model.ln_final(model(tokens, stop_at_layer=layer)))
        torch.testing.assert_close(lens_logits[layer], expected, rtol=0, atol=1e-12)
    identity = TunedLens.for_model(model)
    assert torch.equal(tuned_lens(model, tokens, identity), lens_logits)  # identity translators: exactly the logit lens
    moved = randomised(TunedLens.for_model(model))
    resid = residual_stream(model, tokens)
    for layer in range(n):  # a tuned lens by hand: h + A h + b, then the model's final norm and unembedding
        t = moved.translators[layer]
        by_hand = decode(model, resid[layer] + resid[layer] @ t.weight.T + t.bias)
        torch.testing.assert_close(moved.decode(model, resid[layer], layer), by_hand, rtol=0, atol=1e-12)
    assert torch.equal(moved.decode(model, resid[n], n), lens_logits[n])  # no translator at the last layer
    table = lens_table(model, tokens, moved)
    assert table.layer.tolist() == list(range(n + 1)) and table.hook.tolist() == residual_hooks(model)
    assert table.logit_kl.iloc[-1] == 0 and table.tuned_kl.iloc[-1] == 0
    assert (table[["logit_kl", "tuned_kl"]] >= 0).all().all()
    _, history = train_tuned_lens(model, [tokens], LensTrainConfig(steps=2), progress=False)
    assert len(history) == 2 and history["loss"].notna().all()


def test_model_parameters_stay_untouched_by_training():
    model = small("delta")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lens, _ = train_tuned_lens(model, tokens_for(model), LensTrainConfig(steps=3), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    assert any(bool(t.weight.abs().sum() > 0) for t in lens.translators)


# ---------------------------------------------------------------------- the numbers
def test_kl_to_final_is_the_formula():
    g = torch.Generator().manual_seed(0)
    p_logits, q_logits = torch.randn(3, 5, 11, generator=g), torch.randn(3, 5, 11, generator=g)
    p, logq = p_logits.softmax(-1), q_logits.log_softmax(-1)
    by_hand = (p * (p.log() - logq)).sum(-1)
    torch.testing.assert_close(kl_to_final(p_logits, q_logits), by_hand)
    assert kl_to_final(p_logits, p_logits).abs().max() < 1e-6
    assert (kl_to_final(p_logits, q_logits) > 0).all()


@torch.no_grad()
def test_table_against_held_out_perplexity_and_a_hand_computation(toy):
    model, _, held = toy
    table = lens_table(model, held)
    assert table.logit_ppl.iloc[-1] == pytest.approx(held_out_perplexity(model, held), rel=1e-6)
    resid = [residual_stream(model, t) for t in held]
    for layer in range(model.cfg.n_layers + 1):  # pooled over every prediction / position of every batch
        logp = [decode(model, r[layer]).log_softmax(-1) for r in resid]
        nll = torch.cat([-lp[:, :-1].gather(-1, t[:, 1:, None]).flatten() for lp, t in zip(logp, held)])
        final = [decode(model, r[-1]).log_softmax(-1) for r in resid]
        kl = torch.cat([(f.exp() * (f - lp)).sum(-1).flatten() for f, lp in zip(final, logp)])
        assert table.logit_ce.iloc[layer] == pytest.approx(float(nll.double().mean()), rel=1e-5)
        assert table.logit_kl.iloc[layer] == pytest.approx(float(kl.double().mean()), rel=1e-4, abs=1e-7)


def test_training_lowers_held_out_kl_on_the_bundled_model(toy):
    model, train, held = toy
    torch.set_num_threads(1)
    lens, history = train_tuned_lens(model, train, LensTrainConfig(steps=60), progress=False)
    before, after = lens_table(model, held), lens_table(model, held, lens)
    for layer in range(model.cfg.n_layers):  # every translator, on batches it never saw
        assert after.tuned_kl.iloc[layer] < 0.8 * before.logit_kl.iloc[layer]
    assert after.tuned_kl.iloc[-1] == 0
    assert history["loss"].iloc[-10:].mean() < history["loss"].iloc[0]
    assert history["lr"].iloc[0] == pytest.approx(1.0 * (1 - 0.9))  # the authors' SGD step, decayed linearly
    assert history["lr"].is_monotonic_decreasing


def test_bias_only_training_leaves_the_matrices_at_zero(toy):
    model, train, held = toy
    lens, _ = train_tuned_lens(model, train[:4], LensTrainConfig(steps=20, bias_only=True), progress=False)
    assert all(torch.equal(t.weight, torch.zeros_like(t.weight)) for t in lens.translators)
    assert all(bool(t.bias.abs().sum() > 0) for t in lens.translators)
    after = lens_table(model, held, lens)
    assert after.tuned_kl.iloc[0] < after.logit_kl.iloc[0]  # a bias alone already helps the embeddings


def test_adam_and_a_given_lens_keep_training(toy):
    model, train, _ = toy
    cfg = LensTrainConfig(steps=10, optimizer="adam", lr=10.0)
    assert cfg.warmup() == 2 and cfg.lr_factor(0) == 0 and cfg.lr_factor(2) == 1
    lens, h1 = train_tuned_lens(model, train[:2], cfg, progress=False)
    again, h2 = train_tuned_lens(model, train[:2], cfg, lens=lens, progress=False)
    assert again is lens and h2["loss"].iloc[0] < h1["loss"].iloc[0]


# ---------------------------------------------------------------------- files
def test_save_and_load_round_trip(tmp_path, toy):
    model, _, held = toy
    lens = randomised(TunedLens.for_model(model))
    lens.save(tmp_path / "lens")
    assert sorted(p.name for p in (tmp_path / "lens").iterdir()) == ["tuned_lens.json", "tuned_lens.safetensors"]
    back = TunedLens.load(tmp_path / "lens", model)
    assert back.cfg == lens.cfg
    assert torch.equal(tuned_lens(model, held[0], back), tuned_lens(model, held[0], lens))
    assert TunedLensConfig.from_dict(lens.cfg.to_dict()) == lens.cfg
    assert LensTrainConfig.from_dict(json.loads(json.dumps(LensTrainConfig(steps=5).to_dict()))) == LensTrainConfig(steps=5)


def test_bad_files_raise_value_error(tmp_path, toy):
    model, _, _ = toy
    with pytest.raises(ValueError, match="missing"):
        TunedLens.load(tmp_path / "nothing")
    d = TunedLens.for_model(model).save(tmp_path / "lens")
    (d / "tuned_lens.json").write_text("{not json")
    with pytest.raises(ValueError, match="tuned_lens.json"):
        TunedLens.load(d)
    (d / "tuned_lens.json").write_text(json.dumps({"d_model": 64, "n_layers": 3, "d_vocab": 64}))
    with pytest.raises(ValueError, match="missing"):  # a third translator the weights do not have
        TunedLens.load(d)
    (d / "tuned_lens.json").write_text(json.dumps({"d_model": 64, "n_layers": 2, "d_vocab": 64, "colour": 1}))
    with pytest.raises(ValueError, match="unknown"):
        TunedLens.load(d)
    (d / "tuned_lens.json").write_text(json.dumps({"d_model": 64, "n_layers": 2, "d_vocab": 64}))
    (d / "tuned_lens.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="safetensors"):
        TunedLens.load(d)
    other = small("linear")  # d_model 32, vocabulary 32
    TunedLens.for_model(other).save(tmp_path / "other")
    with pytest.raises(ValueError, match="made for a model"):
        TunedLens.load(tmp_path / "other", model)


# ---------------------------------------------------------------------- bad input
def test_bad_input_raises_value_error(toy):
    model, train, _ = toy
    lens = TunedLens.for_model(model)
    with pytest.raises(ValueError, match="no batches"):
        lens_table(model, [])
    with pytest.raises(ValueError, match=r"pos ≥ 2"):
        lens_table(model, torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="vocabulary"):
        lens_table(model, torch.full((1, 4), 999))
    with pytest.raises(ValueError, match="TunedLens"):
        lens_table(model, train[0], lens="tuned")
    with pytest.raises(ValueError, match="layer"):
        lens.decode(model, torch.zeros(64), 3)
    with pytest.raises(ValueError, match="d_model"):
        lens.decode(model, torch.zeros(5), 0)
    with pytest.raises(ValueError, match="d_model"):
        decode(model, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="shape"):
        kl_to_final(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="made for a model"):
        tuned_lens(small("delta"), torch.zeros(1, 4, dtype=torch.long), lens)
    for bad in (dict(steps=0), dict(lr=0.0), dict(momentum=1.0), dict(weight_decay=-1.0), dict(optimizer="lion"),
                dict(bias_only=True, bias=False), dict(warmup_steps=300), dict(clip_grad_norm=float("nan"))):
        with pytest.raises(ValueError, match="LensTrainConfig"):
            LensTrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown"):
        LensTrainConfig.from_dict({"epochs": 3})
    with pytest.raises(ValueError, match="TunedLensConfig"):
        TunedLensConfig(d_model=0, n_layers=2, d_vocab=3)
    with pytest.raises(ValueError, match="bias"):
        train_tuned_lens(model, train[:1], LensTrainConfig(steps=1, bias_only=True),
                         lens=TunedLens(TunedLensConfig.for_model(model, bias=False)), progress=False)
    with pytest.raises(ValueError, match="LensTrainConfig"):
        train_tuned_lens(model, train[:1], {"steps": 1}, progress=False)


# ---------------------------------------------------------------------- plot
def test_lens_by_layer_draws_logit_and_tuned_lines(toy):
    model, train, held = toy
    lens, _ = train_tuned_lens(model, train[:2], LensTrainConfig(steps=5), progress=False)
    table = lens_table(model, held[:1], lens)
    fig = lens_by_layer(table, "kl")
    assert [t.name for t in fig.data] == ["logit lens", "tuned lens"]
    assert list(fig.data[1].y) == table.tuned_kl.tolist() and fig.layout.yaxis.type == "linear"
    assert lens_by_layer(table).layout.yaxis.type == "log"
    two = pd.concat([table.assign(model="a"), table.drop(columns=[c for c in table if c.startswith("tuned")])
                     .assign(model="b")])
    assert [t.name for t in lens_by_layer(two, "ppl").data] == ["a: logit lens", "a: tuned lens", "b: logit lens"]
    with pytest.raises(ValueError, match="metric"):
        lens_by_layer(table, "accuracy")
    with pytest.raises(ValueError, match="DataFrame"):
        lens_by_layer(table.to_dict())


# ---------------------------------------------------------------------- an imported checkpoint
@pytest.mark.integration
def test_lenses_on_an_imported_checkpoint_match_transformers_hidden_states(tmp_path):
    """A tiny random transformers Qwen3.5 (Gated DeltaNet + attention layers), saved by transformers and opened with
    ``from_pretrained``: our logit lens at every layer equals transformers' own hidden state of that layer through
    its own final norm and lm_head; the identity tuned lens equals it; training lowers the KL on other tokens."""
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "Qwen3_5TextConfig"):
        pytest.skip("this transformers version lacks Qwen3.5")
    import workbench
    from hf_reference import build

    torch.set_num_threads(1)
    hf = build("qwen3_5_text")
    hf.save_pretrained(tmp_path / "qwen", safe_serialization=True)
    model = workbench.from_pretrained(tmp_path / "qwen")
    ids = tokens_for(model, seed=0, batch=2, pos=20)
    ours = logit_lens(model, ids)
    n = model.cfg.n_layers
    assert torch.equal(ours[n], model(ids))
    with torch.no_grad():
        hidden = hf(ids, output_hidden_states=True).hidden_states  # embeddings, then after each layer
        for layer in range(n):
            theirs = hf.lm_head(hf.model.norm(hidden[layer]))
            assert float((ours[layer] - theirs).abs().max() / theirs.abs().max()) < 1e-4, layer
    assert torch.equal(tuned_lens(model, ids, TunedLens.for_model(model)), ours)
    train = [tokens_for(model, seed=s, batch=4, pos=20) for s in range(1, 5)]
    lens, _ = train_tuned_lens(model, train, LensTrainConfig(steps=30), progress=False)
    table = lens_table(model, ids, lens)
    assert (table.tuned_kl.iloc[:n] < table.logit_kl.iloc[:n]).all() and table.tuned_kl.iloc[n] == 0


def test_shape_annotations_hold_at_run_time():
    from beartype import beartype
    from jaxtyping import TypeCheckError, jaxtyped

    def checked(fn):
        return jaxtyped(typechecker=beartype)(fn)

    model = small("gated_delta").to(torch.float32)
    tokens = tokens_for(model)
    resid = checked(residual_stream)(model, tokens)
    checked(logit_lens)(model, tokens)
    lens = TunedLens.for_model(model)
    checked(tuned_lens)(model, tokens, lens)
    checked(TunedLens.decode)(lens, model, resid[0], 0)
    checked(kl_to_final)(torch.randn(2, 5, 7), torch.randn(2, 5, 7))
    with pytest.raises(TypeCheckError):
        checked(kl_to_final)(torch.randn(2, 5, 7), torch.randn(2, 5, 8))  # the vocab axis disagrees


def test_the_measured_table_in_the_docs_is_the_committed_run():
    """docs/lenses.md shows the table of docs/lenses_text_results.json (as scripts/lens_text.py prints it), with its
    command and wall time."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("lens_text", root / "scripts" / "lens_text.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    results = json.loads((root / "docs" / "lenses_text_results.json").read_text())
    doc = (root / "docs" / "lenses.md").read_text()
    assert script.markdown(pd.DataFrame(results["table"])) in doc
    assert results["command"] in doc and f"{results['wall_seconds'] / 60:.1f} min wall" in doc
    assert results["args"]["steps"] == str(LensTrainConfig().steps)
