"""The training loop: learns the toy task with every mixer, deterministic, never mutates its input."""

from __future__ import annotations

import json
import math

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig, TrainConfig, load, train
from workbench.tasks import MQAR
from workbench.training import lr_at

TASK = MQAR(vocab_size=24, seq_len=16, num_kv_pairs=2)  # the toy task: 2 bindings, 12 possible values
FAST = TrainConfig(steps=200, batch_size=32, lr=1e-2, warmup_steps=10, eval_every=100, eval_batches=8)


def config(mixer: str) -> ModelConfig:
    return ModelConfig(d_vocab=24, d_model=32, n_layers=2, n_heads=2, d_head=16, d_mlp=64, n_ctx=16, mixer=mixer,
                       chunk_size=16)


@pytest.mark.integration
@pytest.mark.parametrize("mixer", ["softmax", "linear", "delta", "gated_delta"])
def test_every_mixer_learns_the_toy_task(mixer):
    result = train(config(mixer), TASK, FAST, progress=False)
    chance = math.log(12)  # uniform over the value half of the vocabulary
    final = result.history[-1]
    assert final["eval_loss"] < 0.5 * chance, final
    assert final["eval_acc"] > 0.4, final
    _, cache = result.model.run_with_cache(TASK.sample(2, torch.Generator().manual_seed(9)).tokens)
    assert "blocks.1.attn.hook_z" in cache


def test_training_is_bit_identical_and_leaves_the_input_model_alone(tmp_path):
    start = HookedFastWeightLM(config("delta"))
    before = {k: v.clone() for k, v in start.state_dict().items()}
    cfg = TrainConfig(steps=12, batch_size=8, eval_every=6, eval_batches=1, save_every=6, out_dir=str(tmp_path))
    a = train(start, TASK, cfg, progress=False)
    b = train(start, TASK, cfg, progress=False)
    assert all(torch.equal(before[k], v) for k, v in start.state_dict().items())
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], before[k]) for k in sa)
    untimed = lambda hist: [{k: v for k, v in h.items() if k != "seconds"} for h in hist]  # noqa: E731
    assert untimed(a.history) == untimed(b.history)
    for name in ("step_6", "step_12", "."):
        assert (tmp_path / name / "model.safetensors").is_file()
    reloaded = load(tmp_path)  # the run directory: the final model at its top
    tokens = TASK.sample(2, torch.Generator().manual_seed(0)).tokens
    assert torch.equal(reloaded(tokens), a.model(tokens))
    hist = json.loads((tmp_path / "history.json").read_text())
    assert [h["step"] for h in hist] == list(range(1, 13))
    recipe = json.loads((tmp_path / "recipe.json").read_text())
    assert recipe["task"]["name"] == "mqar" and recipe["train"]["out_dir"] is None and recipe["final"]["step"] == 12


def test_schedule_is_warmup_then_cosine():
    cfg = TrainConfig(steps=110, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(10, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.1 + 0.9 * 0.5)  # half way: cos(π/2) = 0
    assert lr_at(110, cfg) == pytest.approx(0.1)


def test_bad_train_configs_and_inputs():
    with pytest.raises(ValueError, match="steps must be a positive int"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="unknown TrainConfig keys"):
        TrainConfig.from_dict({"step": 3})
    with pytest.raises(ValueError, match="d_vocab"):
        train(ModelConfig(d_vocab=10, n_ctx=16), TASK, FAST, progress=False)


@pytest.mark.integration
def test_soap_learns_is_bit_identical_and_differs_from_adamw():
    from pytorch_optimizer import SOAP

    from workbench.training import make_optimizer

    cfg = TrainConfig.from_dict({**FAST.to_dict(), "optimizer": "soap"})
    assert isinstance(make_optimizer(HookedFastWeightLM(config("delta")), cfg), SOAP)
    learned = train(config("delta"), TASK, cfg, progress=False).history[-1]
    assert learned["eval_loss"] < 0.5 * math.log(12), learned
    short = TrainConfig(steps=12, batch_size=8, eval_every=12, eval_batches=1)
    soap_short = TrainConfig.from_dict({**short.to_dict(), "optimizer": "soap"})
    sa = train(config("delta"), TASK, soap_short, progress=False).model.state_dict()
    sb = train(config("delta"), TASK, soap_short, progress=False).model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    adamw = train(config("delta"), TASK, short, progress=False).model.state_dict()
    assert not torch.equal(adamw["blocks.0.attn.W_Q"], sa["blocks.0.attn.W_Q"])


def test_soap_first_step_only_sets_up_the_preconditioner():
    start = HookedFastWeightLM(config("softmax"))
    one = TrainConfig(steps=1, batch_size=4, eval_every=1, eval_batches=1, warmup_steps=0, optimizer="soap")
    after = train(start, TASK, one, progress=False).model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in start.state_dict().items())


def test_optimizer_choice_defaults_to_adamw_and_old_configs_load():
    old = {k: v for k, v in FAST.to_dict().items() if k not in ("optimizer", "precondition_frequency")}
    loaded = TrainConfig.from_dict(old)
    assert loaded.optimizer == "adamw" and loaded == FAST
    assert TrainConfig.from_dict(json.loads(json.dumps(TrainConfig(optimizer="soap").to_dict()))).optimizer == "soap"
    with pytest.raises(ValueError, match="optimizer must be one of"):
        TrainConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="precondition_frequency"):
        TrainConfig(optimizer="soap", precondition_frequency=0)


def test_lm_loss_masks_and_reductions_are_the_formulas_they_replace():
    import torch.nn.functional as F

    from workbench import lm_loss

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 9, 11, generator=g, requires_grad=True)
    tokens = torch.randint(0, 11, (3, 9), generator=g)
    mask = torch.rand(3, 8, generator=g) < 0.5
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
    old_mean = (nll * mask.flatten().float()).sum() / mask.float().sum().clamp_min(1.0)  # the training loss
    new_mean = lm_loss(logits, tokens, mask=mask)
    assert torch.equal(old_mean, new_mean)
    assert torch.equal(*(torch.autograd.grad(x, logits)[0] for x in (old_mean, new_mean)))
    assert torch.equal(lm_loss(logits, tokens, mask=mask, reduction="sum"),
                       F.cross_entropy(logits[:, :-1][mask], tokens[:, 1:][mask], reduction="sum"))
    assert torch.equal(lm_loss(logits, tokens, reduction="sum"),  # text evaluation's total
                       F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(), reduction="sum"))
    assert torch.equal(lm_loss(logits, tokens, reduction="none"), lm_loss(logits, tokens, per_token=True))
    assert torch.equal(lm_loss(logits, tokens, reduction="none").view(-1), nll)
    assert lm_loss(logits, tokens).item() == pytest.approx(nll.mean().item(), rel=1e-6)
    assert lm_loss(logits, tokens, mask=torch.zeros_like(mask)).item() == 0.0
    assert lm_loss(logits.double(), tokens).dtype == torch.float64  # upcast to float32, never down
    with pytest.raises(ValueError, match="reduction must be"):
        lm_loss(logits, tokens, reduction="max")
    with pytest.raises(ValueError, match="mask must have the shape"):
        lm_loss(logits, tokens, mask=mask[:, 1:])
    with pytest.raises(ValueError, match="mask goes with reduction"):
        lm_loss(logits, tokens, mask=mask, reduction="none")
