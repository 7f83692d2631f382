"""The command line shared by the case studies (case_studies/_cli.py): defaults, --only, --replot, --threads."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from case_studies import _cli
from case_studies.capacity.__main__ import main as capacity_main
from case_studies.mqar.__main__ import main as mqar_main


@dataclasses.dataclass(frozen=True)
class _Run:
    name: str


@dataclasses.dataclass(frozen=True)
class _Study:
    runs: tuple
    seed: int = 3


def _parser():
    return _cli.study_parser("demo", "doc", quick_help="tiny", only_example="a")


def test_defaults_and_output_dirs(tmp_path):
    ap = _parser()
    args = ap.parse_args([])
    assert (args.quick, args.no_png, args.only, args.threads, args.replot) == (False, False, None, 1, False)
    assert str(_cli.output_dir(args, "demo")) == "case_studies/demo/results"
    assert str(_cli.output_dir(ap.parse_args(["--quick"]), "demo")) == "runs/demo-quick"
    assert _cli.output_dir(ap.parse_args(["--out", str(tmp_path)]), "demo") == tmp_path
    # a part other than main has its own folder, unless --out says where
    assert str(_cli.output_dir(args, "demo", "sweep")) == "case_studies/demo/results/sweep"
    assert str(_cli.output_dir(ap.parse_args(["--quick"]), "demo", "sweep")) == "runs/demo-sweep-quick"
    assert _cli.output_dir(ap.parse_args(["--out", str(tmp_path)]), "demo", "sweep") == tmp_path
    assert str(_cli.output_dir(args, "demo", "main")) == "case_studies/demo/results"


def test_select_runs_keeps_order_and_other_fields_and_names_unknown_runs(capsys):
    ap, study = _parser(), _Study((_Run("a"), _Run("b"), _Run("c")), seed=7)
    assert _cli.select_runs(ap, study, None) is study
    picked = _cli.select_runs(ap, study, ["c", "a"])
    assert [r.name for r in picked.runs] == ["a", "c"] and picked.seed == 7
    with pytest.raises(SystemExit) as e:
        _cli.select_runs(ap, study, ["a", "zz"])
    assert e.value.code == 2 and "unknown run(s) ['zz']; known: ['a', 'b', 'c']" in capsys.readouterr().err


def test_replot_needs_valid_results_json(tmp_path, capsys):
    ap = _parser()
    with pytest.raises(SystemExit):
        _cli.replot_results(ap, tmp_path)
    assert "--replot needs" in capsys.readouterr().err
    (tmp_path / "results.json").write_text("{not json")
    with pytest.raises(SystemExit):
        _cli.replot_results(ap, tmp_path)
    assert "is not valid JSON" in capsys.readouterr().err
    (tmp_path / "results.json").write_text(json.dumps({"runs": [1]}))
    assert _cli.replot_results(ap, tmp_path) == {"runs": [1]}


def test_threads_must_be_positive(capsys):
    before = torch.get_num_threads()
    with pytest.raises(SystemExit):
        _cli.set_threads(_parser(), 0)
    assert "--threads must be ≥ 1" in capsys.readouterr().err and torch.get_num_threads() == before


@pytest.mark.parametrize("main", [capacity_main, mqar_main])
def test_studies_refuse_bad_command_lines_before_any_work(main, tmp_path, capsys):
    for argv in (["--quick", "--out", str(tmp_path), "--only", "no-such-run"],
                 ["--out", str(tmp_path), "--replot"],
                 ["--quick", "--out", str(tmp_path), "--threads", "0"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    err = capsys.readouterr().err
    assert "unknown run(s) ['no-such-run']" in err and "--replot needs" in err and "--threads must be ≥ 1" in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_redraw_writes_figures_and_tables_from_results_json(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"runs": [{"name": "a", "x": 2}]}))
    drawn = []
    results = _cli.redraw(_parser(), tmp_path, lambda r, out, png: drawn.append((r["runs"][0]["x"], out, png)),
                          lambda r: f"| {r['runs'][0]['name']} |\n", png=False)
    assert results == {"runs": [{"name": "a", "x": 2}]} and drawn == [(2, tmp_path, False)]
    assert (tmp_path / "tables.md").read_text() == "| a |\n"


def test_run_each_runs_in_order_and_reports_each(capsys):
    entries = _cli.run_each([_Run("a"), _Run("b")], lambda run: {"n": run.name * 2},
                            lambda run, e: f"{run.name} -> {e['n']}", progress=True)
    assert entries == [{"n": "aa"}, {"n": "bb"}]
    out = capsys.readouterr()
    assert "a -> aa" in out.out + out.err and "b -> bb" in out.out + out.err
    assert _cli.run_each([_Run("c")], lambda run: {}, lambda run, e: "never", progress=False) == [{}]
    assert "never" not in "".join(capsys.readouterr())


def test_every_study_reads_back_what_it_writes_and_refuses_bad_run_lists():
    from case_studies.memorization.config import QUICK as MEM
    from case_studies.mqar.config import QUICK as MQAR
    from case_studies.outliers.config import QUICK as OUT

    for study in (MEM, MQAR, OUT):
        cls = type(study)
        assert cls.from_dict(json.loads(json.dumps(study.to_dict()))) == study
        with pytest.raises(ValueError, match="needs at least one run and distinct run names"):
            cls(study.protocol, study.runs[:1] * 2)
        with pytest.raises(ValueError, match="needs at least one run"):
            cls(study.protocol, ())
        with pytest.raises(ValueError, match="unknown .* keys"):
            cls.from_dict({**study.to_dict(), "extra": 1})


def test_finish_writes_results_then_figures_and_tables_from_what_was_written(tmp_path):
    seen = []
    written = _cli.finish(tmp_path, {"quick": True, "runs": [{"name": "a", "x": 0.5}]}, "python -m x", 0.0, 0.0,
                          lambda r, out, png: seen.append(r), lambda r: f"| {r['runs'][0]['x']} |\n", png=False)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert written == on_disk and seen == [on_disk]
    assert on_disk["command"] == "python -m x" and on_disk["cpu_seconds"] >= 0 and on_disk["runs"][0]["x"] == 0.5
    assert (tmp_path / "tables.md").read_text() == "| 0.5 |\n"


def test_protocols_hold_a_train_config_and_read_the_flat_protocols_of_older_results():
    """The committed results.json files hold protocols with the training fields flat; they still load, to
    the protocol that holds the same TrainConfig the study trains with."""
    from case_studies.memorization.config import QUICK as MEM
    from case_studies.mqar.config import QUICK as MQAR
    from case_studies.outliers.config import QUICK as OUT
    from workbench.training import TrainConfig

    for name, study in (("memorization", MEM), ("mqar", MQAR), ("outliers", OUT)):
        protocol = study.protocol
        assert isinstance(protocol.train, TrainConfig) and protocol.seed == protocol.train.seed
        flat = {k: v for k, v in protocol.to_dict().items() if k != "train"}
        flat.update({k: getattr(protocol.train, k) for k in type(protocol).FLAT_TRAIN_KEYS})
        assert type(protocol).from_dict(json.loads(json.dumps(flat))) == protocol, name
        with pytest.raises(ValueError, match="out_dir must be None"):
            dataclasses.replace(protocol, train=dataclasses.replace(protocol.train, out_dir="x"))


@dataclasses.dataclass(frozen=True)
class _SeededRun:
    name: str
    seed: int


def test_run_each_with_out_continues_an_interrupted_study_to_the_same_entries(tmp_path, monkeypatch):
    """A study killed inside its second run's training: the same call again takes the first run's entry from
    out/.progress, resumes the second run's training from its saved state, and ends with the entries of a
    study never interrupted; finish removes the progress folder."""
    from workbench import ModelConfig, TrainConfig, train
    from workbench.tasks import MQAR
    from workbench.training import trainer

    torch.set_num_threads(1)
    task = MQAR(vocab_size=24, seq_len=16, num_kv_pairs=2)
    executed = []

    def execute(run):
        executed.append(run.name)
        cfg = TrainConfig(steps=10, batch_size=4, eval_every=3, eval_batches=1, seed=run.seed)
        result = train(ModelConfig(d_vocab=24, d_model=16, n_heads=2, mixer="delta", seed=run.seed), task, cfg,
                       progress=False)
        return {"name": run.name, "loss": [h["train_loss"] for h in result.history],
                "weight": result.model.W_U.sum().item(), "after": torch.rand(1).item()}  # global RNG continues

    runs = [_SeededRun("a", 1), _SeededRun("b", 2), _SeededRun("c", 3)]
    torch.manual_seed(0)
    whole = _cli.run_each(runs, execute, lambda r, e: "", progress=False, out=tmp_path / "whole", context={"p": 1})

    real, calls = trainer.masked_loss, {"n": 0}

    def crash_in_b(model, batch):
        calls["n"] += 1
        if calls["n"] == 10 + 8:  # run a's 10 steps, then step 8 of run b
            raise KeyboardInterrupt
        return real(model, batch)

    monkeypatch.setattr(trainer, "masked_loss", crash_in_b)
    out = tmp_path / "killed"
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        _cli.run_each(runs, execute, lambda r, e: "", progress=False, out=out, context={"p": 1})
    assert (out / ".progress" / "a.json").is_file() and list((out / ".progress" / "b").glob("train_state-*.pt"))
    monkeypatch.undo()
    executed.clear()
    torch.manual_seed(0)
    again = _cli.run_each(runs, execute, lambda r, e: "", progress=False, out=out, context={"p": 1})
    assert executed == ["b", "c"] and again == whole
    # another protocol (context) is a different study: nothing is taken from the saved progress
    executed.clear()
    _cli.run_each(runs[:1], execute, lambda r, e: "", progress=False, out=out, context={"p": 2})
    assert executed == ["a"]
    _cli.finish(out, {"quick": True, "runs": again}, "python -m x", 0.0, 0.0, lambda r, o, png: [],
                lambda r: "", png=False)
    assert not (out / ".progress").exists()
