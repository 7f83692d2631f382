"""Tokens and text as TransformerLens users call them: to_tokens, to_str_tokens, to_string, to_single_token with
the byte and BPE tokenizers of our text models, the task vocabularies of synthetic models (readable names such
as k3 / v8) and a checkpoint's own tokenizer.json; generate from text."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig, load, save
from workbench.tasks import TASKS, AssociativeRecall, Canaries, CodeExecution, ListOps, MQAR
from workbench.text import BPETokenizer, ByteTokenizer
from workbench.text.vocabulary import VocabularyTokenizer, task_vocabulary

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINTS = sorted(p for p in (ROOT / "workbench" / "checkpoints").iterdir() if (p / "config.json").is_file())


@pytest.mark.parametrize("path", CHECKPOINTS, ids=lambda p: p.name)
def test_every_shipped_checkpoint_has_readable_token_strings(path):
    model = load(path)
    assert model.tokenizer is not None and model.tokenizer.vocab_size == model.cfg.d_vocab
    strings = model.to_str_tokens(torch.arange(model.cfg.d_vocab))
    assert len(set(strings)) == model.cfg.d_vocab  # one distinct name per id


def test_a_synthetic_model_speaks_its_task_vocabulary():
    model = load(ROOT / "workbench" / "checkpoints" / "toy-delta")  # MQAR, V = 64: keys k1…k31, values v0…v31
    assert model.to_str_tokens(torch.tensor([[0, 3, 40, 63]])) == ["_", "k3", "v8", "v31"]
    assert model.to_tokens("k3 v8 k7 v18 k3").tolist() == [[3, 40, 7, 50, 3]]
    assert model.to_tokens(["k3 v8", "k7 v18"]).tolist() == [[3, 40], [7, 50]]
    assert model.to_single_token("v8") == 40
    assert model.to_string(torch.tensor([3, 40])) == "k3 v8"
    assert model.to_string(torch.tensor([[3, 40], [7, 50]])) == ["k3 v8", "k7 v18"]
    assert model.to_str_tokens(["k3 v8", "k1"]) == [["k3", "v8"], ["k1"]]
    with pytest.raises(ValueError, match=r"'k3 v8' is not a single token: it encodes to 2 tokens \['k3', 'v8'\]"):
        model.to_single_token("k3 v8")
    with pytest.raises(ValueError, match="'key3' is not a token of this vocabulary"):
        model.to_tokens("key3")
    with pytest.raises(ValueError, match="no bos_token_id"):
        model.to_tokens("k3", prepend_bos=True)
    with pytest.raises(ValueError, match="different lengths .* no pad_token_id"):
        model.to_tokens(["k3 v8", "k1"])
    # generate from text: it recalls the value bound to k3, and answers in text
    assert model.generate("k3 v8 k7 v18 k12 v1 k3", max_new_tokens=1, do_sample=False, verbose=False) \
        == "k3 v8 k7 v18 k12 v1 k3 v8"
    assert model.generate("k3 v8 k3", max_new_tokens=1, do_sample=False, verbose=False, return_type="tokens").shape \
        == (1, 4)


def test_the_vocabulary_survives_a_save_without_its_recipe(tmp_path):
    model = load(ROOT / "workbench" / "checkpoints" / "toy-delta")
    again = load(save(model, tmp_path / "copy"))
    assert isinstance(again.tokenizer, VocabularyTokenizer) and again.to_str_tokens("k3 v8") == ["k3", "v8"]


@pytest.mark.parametrize("task", [MQAR(), AssociativeRecall(), Canaries(), CodeExecution(), ListOps()],
                         ids=lambda t: t.NAME)
def test_every_synthetic_language_task_names_each_token_once(task):
    tok = task_vocabulary(task)
    assert tok.vocab_size == task.d_vocab
    assert tok.encode(tok.decode(range(task.d_vocab))) == list(range(task.d_vocab))


def test_the_tasks_without_names_are_the_text_tasks_and_retrieval():
    unnamed = {name for name, cls in TASKS.items() if not hasattr(cls, "vocab")}
    assert unnamed == {"text", "text_canaries", "retrieval"}  # real text has its tokenizer; retrieval is no LM


def tiny(d_vocab: int) -> HookedFastWeightLM:
    return HookedFastWeightLM(ModelConfig(d_vocab=d_vocab, d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=16,
                                          n_ctx=32, mixer="delta")).eval()


def test_bytes_and_bpe_tokenizers_of_text_models(tmp_path):
    model = tiny(256)
    model.tokenizer = ByteTokenizer()
    assert model.to_str_tokens("hi\n") == ["h", "i", "\n"]
    assert model.to_single_token("h") == ord("h")
    with pytest.raises(ValueError, match="not a single token"):
        model.to_single_token("hé")
    assert model.to_tokens("a" * 40).shape == (1, 32)  # truncated to n_ctx
    assert model.to_tokens("a" * 40, truncate=False, move_to_device=False).shape == (1, 40)
    again = load(save(model, tmp_path / "bytes"))
    assert isinstance(again.tokenizer, ByteTokenizer)
    assert isinstance(again.generate("ab", max_new_tokens=3, do_sample=False, verbose=False), str)

    bpe = BPETokenizer.train(["the cat sat on the mat"] * 20 + ["a dog ran"] * 5, vocab_size=270)
    model = tiny(bpe.vocab_size)
    model.tokenizer = bpe
    pieces = model.to_str_tokens("the cat")
    assert "".join(pieces) == "the cat" and model.to_string(model.to_tokens("the cat")[0]) == "the cat"
    again = load(save(model, tmp_path / "bpe"))
    assert again.to_str_tokens("the cat") == pieces


def test_without_a_tokenizer_text_is_a_clear_error():
    model = tiny(10)
    for call in (lambda: model.to_tokens("a"), lambda: model.to_str_tokens([1, 2]), lambda: model.to_string([1]),
                 lambda: model.to_single_token("a")):
        with pytest.raises(ValueError, match="no tokenizer"):
            call()
