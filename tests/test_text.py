"""The real-text pipeline: corpus split, tokenizers, the TextLM task, validation perplexity (checked on a
model whose answer is known: uniform logits give perplexity = vocabulary size), and the run command."""

from __future__ import annotations

import json
import math

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig, lm_loss
from workbench.training.run_config import run_config_from_dict
from workbench.tasks import TextLM, task_from_dict
from workbench.text import (BPETokenizer, ByteTokenizer, evaluate_text, load_corpus, split_documents,
                            tokenizer_from_json, validation_windows)
from workbench.training.text import main, run_text
from workbench.training import TrainConfig


def test_python_topics_corpus_and_document_split():
    docs = load_corpus("python-topics")
    assert len(docs) > 50 and sum(len(d.text) for d in docs) > 300_000
    assert any("while" in d.title for d in docs) and "loop" in " ".join(d.text for d in docs)
    train, val = split_documents(docs, 0.1)
    assert {d.title for d in train}.isdisjoint({d.title for d in val})
    assert {d.title for d in train} | {d.title for d in val} == {d.title for d in docs}
    share = sum(len(d.text) for d in val) / sum(len(d.text) for d in docs)
    assert 0.1 <= share <= 0.1 + max(len(d.text) for d in val) / sum(len(d.text) for d in docs)
    assert split_documents(docs, 0.1) == (train, val)  # no randomness
    with pytest.raises(ValueError, match="unknown corpus"):
        load_corpus("wikipedia")
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\)"):
        split_documents(docs, 1.0)


def test_file_corpus(tmp_path):
    (tmp_path / "a.txt").write_text("alpha " * 50)
    (tmp_path / "b.txt").write_text("beta " * 50)
    assert [d.title for d in load_corpus(f"file:{tmp_path}")] == ["a.txt", "b.txt"]
    one = load_corpus(f"file:{tmp_path / 'a.txt'}")
    train, val = split_documents(one, 0.2)
    assert train[0].text + val[0].text == "alpha " * 50 and len(val[0].text) == 60
    with pytest.raises(ValueError, match="no such file"):
        load_corpus(f"file:{tmp_path / 'missing'}")


def test_docstring_corpus_reads_module_class_and_function_docstrings_in_source_order(tmp_path):
    from workbench.text.corpus import docstrings_under

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text('"""The package."""\n')
    (tmp_path / "pkg" / "mod.py").write_text(
        '"""Module doc."""\n\nclass A:\n    """Class A.\n\n    Body.\n        Indented more.\n    """\n\n'
        '    def f(self):\n        """Method f."""\n\n\ndef g():\n    pass\n\n\n'
        'async def h():\n    """Coroutine h."""\n')
    (tmp_path / "pkg" / "tests").mkdir()
    (tmp_path / "pkg" / "tests" / "t.py").write_text('"""A test, left out."""\n')
    (tmp_path / "test_x.py").write_text('"""A test module, left out."""\n')
    (tmp_path / "broken.py").write_text('"""Never read."""\ndef (:\n')  # does not parse: left out
    (tmp_path / "bare.py").write_text("x = 1\n")  # no docstring: no document
    docs = docstrings_under(tmp_path)
    assert [d.title for d in docs] == ["pkg", "pkg.mod"]
    assert docs[0].text == "The package."
    assert docs[1].text == "Module doc.\n\nClass A.\n\nBody.\n    Indented more.\n\nMethod f.\n\nCoroutine h."
    assert [d.title for d in docstrings_under(tmp_path / "pkg", prefix="pkg")] == ["pkg", "pkg.mod"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no docstrings found"):
        docstrings_under(tmp_path / "empty")


def test_python_docstrings_and_package_docstring_corpora():
    import inspect
    import json as json_module
    import json.decoder

    docs = load_corpus("python-docstrings")
    titles = [d.title for d in docs]
    assert titles == sorted(set(titles)) and len(docs) > 300 and sum(len(d.text) for d in docs) > 1_000_000
    assert not any(t.startswith(("test.", "idlelib", "lib2to3")) or ".test_" in t for t in titles)
    by_title = {d.title: d for d in docs}
    # an independent reading of the same text: the docstrings Python itself attaches at import
    assert by_title["json"].text.startswith(inspect.cleandoc(json_module.__doc__))
    assert inspect.getdoc(json.decoder.JSONDecoder.decode) in by_title["json.decoder"].text
    package = load_corpus("docstrings:json")  # a stdlib package, found like any installed one
    assert [d.title for d in package] == [t for t in titles if t == "json" or t.startswith("json.")]
    assert [d.text for d in package] == [by_title[d.title].text for d in package]
    for bad, match in (("docstrings:no_such_package_x", "no installed package"), ("docstrings:", "name each"),
                       ("docstrings:json+json", "name each"), ("docstrings:os.path", "no installed package")):
        with pytest.raises(ValueError, match=match):
            load_corpus(bad)


def test_tokenizers_round_trip_unseen_text():
    train, val = split_documents(load_corpus(), 0.1)
    bpe = BPETokenizer.train([d.text for d in train], vocab_size=512)
    assert bpe.vocab_size == 512
    text = val[0].text + " naïve café ✓"
    ids = bpe.encode(text)
    assert max(ids) < 512 and bpe.decode(ids) == text
    assert len(ids) < len(text.encode()) / 2  # merges learnt on other documents still compress
    again = tokenizer_from_json(bpe.to_json())
    assert again.encode(text) == ids
    assert BPETokenizer.train([d.text for d in train], vocab_size=512).to_json() == bpe.to_json()  # deterministic
    b = ByteTokenizer()
    assert b.encode("é") == [0xC3, 0xA9] and b.decode(b.encode(text)) == text
    assert isinstance(tokenizer_from_json(b.to_json()), ByteTokenizer)
    with pytest.raises(ValueError, match="vocab_size > 256"):
        BPETokenizer.train(["abc"], vocab_size=100)


def test_text_task_samples_windows_of_the_training_stream():
    task = TextLM(tokenizer="bytes", seq_len=16)
    assert task.d_vocab == 256 and task.vocab_size == 256
    b1 = task.sample(4, torch.Generator().manual_seed(1))
    b2 = task.sample(4, torch.Generator().manual_seed(1))
    assert torch.equal(b1.tokens, b2.tokens) and b1.loss_mask.all() and b1.tokens.shape == (4, 16)
    stream = bytes(task.data.train_ids.tolist())
    for row in b1.tokens:
        assert bytes(row.tolist()) in stream
    assert task_from_dict(task.to_dict()) == task
    run = run_config_from_dict({"model": {"d_vocab": 256, "n_ctx": 16}, "task": task.to_dict(), "train": {"steps": 1}})
    assert run.task == task
    with pytest.raises(ValueError, match="tokenizer must be one of"):
        TextLM(tokenizer="words")


def test_validation_windows_predict_every_token_once():
    ids = torch.arange(23)
    windows = validation_windows(ids, 5)
    predicted = torch.cat([w[1:] for w in windows])
    assert predicted.tolist() == list(range(1, 23))
    assert all(len(w) <= 5 for w in windows)


def test_uniform_model_has_perplexity_equal_to_the_vocabulary():
    task = TextLM(tokenizer="bpe", vocab_size=300, seq_len=128)
    model = HookedFastWeightLM(ModelConfig(d_vocab=300, d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32,
                                           n_ctx=128, mixer="softmax"))
    with torch.no_grad():
        model.unembed.W_U.zero_()
    m = evaluate_text(model, task)
    n = len(task.data.val_ids)
    assert m["val_tokens"] == n - 1
    assert m["val_ppl"] == pytest.approx(300, rel=1e-5)
    first = len(task.data.tokenizer.decode([int(task.data.val_ids[0])]).encode())
    assert m["val_bpb"] == pytest.approx((n - 1) * math.log2(300) / (task.data.val_bytes - first), rel=1e-5)
    # a trained-looking model: evaluate_text equals the mean of lm_loss over the windows, token-weighted
    model = HookedFastWeightLM(ModelConfig(d_vocab=300, d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32,
                                           n_ctx=128, mixer="delta", init_std=0.5))
    with torch.no_grad():
        total = sum(float(lm_loss(model(w[None]), w[None], per_token=True).sum())
                    for w in validation_windows(task.data.val_ids, 128))
    assert evaluate_text(model, task, batch_size=7)["val_loss"] == pytest.approx(total / (n - 1), rel=1e-5)


def test_run_keeps_checkpoints_and_beats_uniform(tmp_path):
    task = TextLM(tokenizer="bytes", seq_len=32)
    cfg = ModelConfig(d_vocab=256, d_model=32, n_layers=1, n_heads=2, d_head=16, d_mlp=64, n_ctx=32,
                      mixer="softmax", block="outlier_protected")
    report = run_text(cfg, task, TrainConfig(steps=40, batch_size=8, lr=1e-2, save_every=20, eval_every=20),
                      out=tmp_path / "run", progress=False)
    assert sorted(report["by_step"]) == [20, 40]
    assert (tmp_path / "run" / "step_20" / "config.json").exists() and (tmp_path / "run" / "config.json").is_file()
    assert report["final"]["val_loss"] < math.log(256) - 1.0  # far better than uniform bytes
    saved = json.loads((tmp_path / "run" / "text_metrics.json").read_text())
    assert saved["final"]["val_ppl"] == pytest.approx(report["final"]["val_ppl"])
    recipe = json.loads((tmp_path / "run" / "recipe.json").read_text())
    assert run_config_from_dict(recipe).model.block == "outlier_protected"
    with pytest.raises(ValueError, match="d_vocab"):
        run_text(cfg.replace(d_vocab=100), task, TrainConfig(steps=1), progress=False)


def test_run_command(tmp_path, capsys):
    main(["--out", str(tmp_path / "cli"), "--mixer", "gated_delta", "--tokenizer", "bytes", "--steps", "4",
          "--save-every", "2", "--seq-len", "128", "--d-model", "16", "--d-head", "8", "--n-heads", "2",
          "--d-mlp", "32", "--batch-size", "2"])
    out = capsys.readouterr().out
    assert "step      2" in out and "step      4" in out and "bits/byte" in out
