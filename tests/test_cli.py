"""The command line: info (checkpoint summary), train (a JSON run config), case-study, --help everywhere."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner

import workbench.cli.studies as studies
from workbench import HookedFastWeightLM, ModelConfig, load, save
from workbench.cli import app
from workbench.paths import DEFAULT_CHECKPOINT
from workbench.training.recipes import RECIPES
from workbench.training.run_config import load_run_config, run_config_from_dict
from workbench.tasks import MQAR
from workbench.training import TrainConfig, train

runner = CliRunner()

TINY = {
    "model": {"d_vocab": 16, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_head": 8, "d_mlp": 16, "n_ctx": 8,
              "chunk_size": 4},
    "task": {"name": "mqar", "vocab_size": 16, "seq_len": 8, "num_kv_pairs": 2},
    "train": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "eval_every": 3, "eval_batches": 1, "seed": 5},
}


def write(path, data) -> str:
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


# ------------------------------------------------------------------------------------------------- --help
def test_every_command_has_help():
    names = sorted(typer.main.get_command(app).commands)
    assert {"info", "demo", "train-recipe", "train", "case-study"} <= set(names)
    for args in [["--help"], *([n, "--help"] for n in names)]:
        res = runner.invoke(app, args)
        assert res.exit_code == 0 and "Usage" in res.output, (args, res.output)


def test_train_recipe_help_lists_every_recipe():
    from workbench.training.recipes import RECIPES

    res = runner.invoke(app, ["train-recipe", "--help"], env={"COLUMNS": "240"})
    assert res.exit_code == 0, res.output
    listed = " ".join(res.output.replace("│", " ").split())
    assert "recipe name: " + ", ".join(RECIPES) in listed


# ------------------------------------------------------------------------------------------------- info
def test_info_prints_config_hooks_task_and_final_metrics():
    res = runner.invoke(app, ["info", str(DEFAULT_CHECKPOINT)])
    assert res.exit_code == 0, res.output
    recipe = json.loads((DEFAULT_CHECKPOINT / "recipe.json").read_text())
    model = load(DEFAULT_CHECKPOINT)
    assert f"{model.num_params():,} parameters" in res.output
    assert "mixer=delta" in res.output and "name=mqar" in res.output and "num_kv_pairs=6" in res.output
    assert f"eval_acc={recipe['final']['eval_acc']:.4g}" in res.output and f"steps={recipe['train']['steps']}" in res.output
    assert f"hooks ({len(model.hook_dict)};" in res.output
    for hook in ("hook_embed", "attn.hook_delta", "attn.hook_state", "mlp.hook_post", "ln_final.hook_normalized"):
        assert hook in res.output


def test_info_without_or_with_a_broken_recipe(tmp_path):
    save(HookedFastWeightLM(ModelConfig(d_vocab=8, n_layers=1, n_heads=1)), tmp_path)
    res = runner.invoke(app, ["info", str(tmp_path)])
    assert res.exit_code == 0 and "no recipe.json" in res.output and "1 block(s) (DeltaNet)" in res.output
    (tmp_path / "recipe.json").write_text("{not json")
    res = runner.invoke(app, ["info", str(tmp_path)])
    assert res.exit_code == 0 and "not readable JSON" in res.output
    res = runner.invoke(app, ["info", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output


# ------------------------------------------------------------------------------------------------- train
def test_train_writes_the_checkpoint_the_library_would_train(tmp_path):
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", write(tmp_path / "run.json", TINY), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert "accuracy" in res.output and "after 3 steps" in res.output
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "recipe.json", "history.json"}
    recipe = json.loads((out / "recipe.json").read_text())
    assert recipe["task"] == MQAR(**{k: v for k, v in TINY["task"].items() if k != "name"}).to_dict()
    assert recipe["final"]["step"] == 3 and len(json.loads((out / "history.json").read_text())) == 3

    ref = train(ModelConfig.from_dict(dict(**TINY["model"])), MQAR(vocab_size=16, seq_len=8, num_kv_pairs=2),
                TrainConfig(**TINY["train"]), progress=False).model
    got = load(out)
    assert got.cfg == ref.cfg
    for name, t in ref.state_dict().items():
        assert torch.equal(got.state_dict()[name], t), name  # the CLI trained exactly what the file says

    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and "name=mqar" in info.output and "eval_acc=" in info.output


def test_train_keeps_intermediate_checkpoints_with_save_every(tmp_path):
    cfg = {**TINY, "train": {**TINY["train"], "save_every": 2}}
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", write(tmp_path / "run.json", cfg), "--out", str(out), "--no-progress"])
    assert res.exit_code == 0, res.output
    assert (out / "step_2" / "model.safetensors").is_file() and not (out / "final").exists()
    assert load(out).cfg.d_model == 16


def test_a_bundled_recipe_json_is_a_run_config():
    run = load_run_config(DEFAULT_CHECKPOINT / "recipe.json")
    recipe = RECIPES["toy-delta"]
    assert (run.model, run.task, run.train) == (recipe.model, recipe.task, recipe.train)


def _mutate(section, **changes):
    return {**TINY, section: {**TINY[section], **changes}}


BAD = [
    ("missing.json", None, "does not exist"),
    ("run.json", "{not json", "is not valid JSON (line 1, column 2"),
    ("run.json", "[1, 2]", "must be a JSON object"),
    ("run.json", {"model": TINY["model"], "train": TINY["train"]}, "is missing ['task']"),
    ("run.json", {**TINY, "optimizer": {}}, "has unknown keys ['optimizer']"),
    ("run.json", {**TINY, "model": [1]}, "'model' must be a JSON object"),
    ("run.json", _mutate("model", d_modle=32), "model: unknown ModelConfig keys ['d_modle']"),
    ("run.json", _mutate("model", mixer="lstm"), "model: ModelConfig.mixer: unknown mixer"),
    ("run.json", _mutate("task", name="copy"), "task: 'name' must be one of ["),
    ("run.json", _mutate("task", num_pairs=3), "unknown keys ['num_pairs'] for task 'mqar'"),
    ("run.json", _mutate("task", seq_len=7), "task: MQAR seq_len must be even"),
    ("run.json", _mutate("train", steps=0), "train: TrainConfig.steps must be a positive int"),
    ("run.json", _mutate("train", out_dir="x"), "remove 'out_dir' from 'train'"),
    ("run.json", _mutate("model", d_vocab=8), "set model.d_vocab to at least 16"),
    ("run.json", _mutate("model", n_ctx=4), "set model.n_ctx to at least 8"),
]


@pytest.mark.parametrize("name,content,message", BAD, ids=[m for *_, m in BAD])
def test_train_rejects_bad_run_configs_with_the_fix(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        write(path, content)
    res = runner.invoke(app, ["train", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert res.exit_code == 2 and "error:" in res.output, res.output
    assert message in res.output.replace("\n", " "), res.output
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------- case-study
FAKE_MAIN = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path
    args = sys.argv[1:]
    out = Path(args[args.index("--out") + 1]) if "--out" in args else Path("fake_results")
    out.mkdir(parents=True, exist_ok=True)
    (out / "argv.json").write_text(json.dumps({"args": args, "cwd": os.getcwd()}))
    sys.exit(3 if "--fail" in args else 0)
''')


@pytest.fixture
def fake_case_studies(tmp_path, monkeypatch):
    root = tmp_path / "checkout" / "case_studies"
    for pkg, main in [("fake", FAKE_MAIN), ("_private", FAKE_MAIN), ("no_main", None)]:
        (root / pkg).mkdir(parents=True)
        (root / pkg / "__init__.py").write_text("")
        if main:
            (root / pkg / "__main__.py").write_text(main)
    (root / "__init__.py").write_text("")
    monkeypatch.setattr(studies, "CASE_STUDIES_DIR", root)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return root


def test_case_studies_are_discovered_from_the_package(fake_case_studies):
    assert studies.available_case_studies() == ["fake"]


def test_case_study_runs_the_module_with_quick_out_and_extra_args(fake_case_studies, tmp_path):
    res = runner.invoke(app, ["case-study", "fake", "--quick", "--out", "results", "--no-png"])
    assert res.exit_code == 0, res.output
    written = json.loads((tmp_path / "elsewhere" / "results" / "argv.json").read_text())  # --out as typed
    assert written["args"] == ["--quick", "--out", str(tmp_path / "elsewhere" / "results"), "--no-png"]
    assert written["cwd"] == str(fake_case_studies.parent)  # run from the checkout root

    res = runner.invoke(app, ["case-study", "fake"])
    assert res.exit_code == 0 and (fake_case_studies.parent / "fake_results" / "argv.json").is_file()
    assert runner.invoke(app, ["case-study", "fake", "--fail"]).exit_code == 3  # its exit code is passed on


def test_case_study_unknown_or_missing(fake_case_studies, tmp_path, monkeypatch):
    res = runner.invoke(app, ["case-study", "nope"])
    assert res.exit_code == 2 and "unknown case study 'nope'; available: fake" in res.output
    monkeypatch.setattr(studies, "CASE_STUDIES_DIR", tmp_path / "nowhere")
    res = runner.invoke(app, ["case-study", "fake"])
    assert res.exit_code == 2 and "no case studies found" in res.output


def test_the_readme_run_config_example_is_valid():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = [b for b in re.findall(r"```json\n(.*?)```", readme, flags=re.S) if '"model"' in b]
    assert blocks, "README.md should show a run config example in a ```json block"
    for block in blocks:
        run = run_config_from_dict(json.loads(block), "README example")
        assert run.task.d_vocab <= run.model.d_vocab
