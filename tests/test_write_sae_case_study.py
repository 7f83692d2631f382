"""case_studies/write_sae: the quick run writes its results, tables, dictionaries and figures; --replot redraws."""

from __future__ import annotations

import json

import pytest

from case_studies.write_sae.__main__ import main
from case_studies.write_sae.config import FULL, QUICK
from workbench.analysis.dictionaries import WriteSAE, load_dictionary


def test_the_study_configs_serialise():
    for study in (FULL, QUICK):
        data = json.loads(json.dumps(study.to_dict()))
        assert data["write_sae"]["k"] == study.write_sae.k and data["heads"] == list(study.heads)


@pytest.mark.integration
def test_quick_run(tmp_path, capsys):
    out = tmp_path / "ws"
    main(["--quick", "--no-png", "--out", str(out)])
    results = json.loads((out / "results.json").read_text())
    assert results["command"].startswith("python -m case_studies.write_sae --quick") and results["wall_seconds"] > 0
    head = results["heads"][0]
    rates = {(w["baseline"], w["metric"]): w for w in head["win_rates"]}
    assert set(rates) == {("ablate", "loss"), ("ablate", "kl"), ("random", "loss"), ("random", "kl")}
    n = len(results["firings"]["atom"])
    assert rates["ablate", "kl"]["n"] == n > 0 and 0 <= rates["ablate", "kl"]["ci_low"] <= rates["ablate", "kl"]["ci_high"] <= 1
    assert {r["k"] for r in results["sweep"]} == set(QUICK.sweep_k)
    assert isinstance(load_dictionary(out / "write_sae_L1H0.safetensors"), WriteSAE)
    assert (out / "atom_usage_L1H0.html").is_file() and (out / "reconstruction_vs_sparsity.html").is_file()
    assert "atom install vs the controls" in (out / "tables.md").read_text()
    assert "python -m case_studies.write_sae --quick" in capsys.readouterr().out
    (out / "tables.md").unlink()
    main(["--replot", "--no-png", "--out", str(out)])
    assert (out / "tables.md").is_file()
    with pytest.raises(SystemExit):
        main(["--only", "x", "--out", str(tmp_path / "other")])


class _Killed(Exception):
    pass


@pytest.mark.integration
def test_a_run_killed_after_its_first_part_continues_to_the_same_results(tmp_path, monkeypatch):
    """Each part (a head, the sweep, the SAE) is saved when it finishes; the same command again takes the finished
    parts from out/.progress and ends with the results of a run never interrupted."""
    from case_studies.write_sae import run as study_run

    whole = tmp_path / "whole"
    main(["--quick", "--no-png", "--out", str(whole)])
    real_sweep, real_head = study_run.sweep, study_run.head_entry

    def killed(*args, **kwargs):
        raise _Killed("killed in the sweep")

    out = tmp_path / "killed"
    monkeypatch.setattr(study_run, "sweep", killed)
    with pytest.raises(_Killed):
        main(["--quick", "--no-png", "--out", str(out)])
    assert (out / ".progress" / "head0.json").is_file() and not (out / "results.json").exists()
    monkeypatch.setattr(study_run, "sweep", real_sweep)
    heads_run = []
    monkeypatch.setattr(study_run, "head_entry", lambda *a, **k: heads_run.append(1) or real_head(*a, **k))
    main(["--quick", "--no-png", "--out", str(out)])
    assert not heads_run  # the finished head was taken from .progress
    timing = {"command", "wall_seconds", "cpu_seconds", "written", "machine"}
    a, b = (json.loads((d / "results.json").read_text()) for d in (whole, out))
    assert {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}
    assert not (out / ".progress").exists()
