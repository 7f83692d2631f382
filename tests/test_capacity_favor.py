"""The capacity study's part "favor": FAVOR+'s three choices (redraw, orthogonal features, input scaling) set
one at a time in the retrieval model, the part's runs and seeds, its statistics and its quick run.

φ is checked against FAVOR+'s formula written out here index by index, from the pre-φ key recomputed from the
model's parameters — nothing of the model's feature-map code.
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench.components.feature_maps import orthogonal_features
from workbench.retrieval.model import HookedRetriever, RetrieverConfig
from workbench.tasks import Retrieval

ROOT = Path(__file__).resolve().parents[1]
CHOICES = list(itertools.product((True, False), repeat=3))  # (redraw, orthogonal, scale)


def _favor_by_hand(x: torch.Tensor, omega: torch.Tensor, scale: bool) -> torch.Tensor:
    """exp(±ωⱼᵀx̃ − ‖x̃‖²/2)/√(2m) for one vector x [d]; x̃ = x·d^-¼ when ``scale``."""
    xs = x.double() * (x.shape[0] ** -0.25 if scale else 1.0)
    sq = float((xs * xs).sum()) / 2
    proj = [float((xs * omega[:, j].double()).sum()) for j in range(omega.shape[1])]
    return torch.tensor([math.exp(p - sq) for p in proj] + [math.exp(-p - sq) for p in proj],
                        dtype=torch.float64) / math.sqrt(2 * len(proj))


@pytest.mark.parametrize("redraw,orthogonal,scale", CHOICES)
def test_each_favor_choice_is_what_the_config_says(redraw, orthogonal, scale):
    S, d, m, seed = 6, 4, 6, 3
    cfg = RetrieverConfig(num_keys=S, d_embed=5, d_head=d, feature_map="favor", favor_features=m,
                          favor_redraw=redraw, favor_orthogonal=orthogonal, favor_scale=scale, seed=seed)
    assert cfg.favor_choices == (redraw, orthogonal, scale)
    model = HookedRetriever(cfg)
    batch = Retrieval(num_keys=S, setting=1).sample(2, torch.Generator().manual_seed(5), all_queries=True)
    # the projection this call uses: drawn once from the seed, or the next draw of the model's generator
    gen = torch.Generator()
    gen.set_state(model.favor_generator.get_state()) if redraw else gen.manual_seed(seed)
    omega = orthogonal_features(d, m, gen) if orthogonal else torch.randn(d, m, generator=gen)
    _, cache = model.run_with_cache(batch.keys, batch.values, batch.queries)
    with torch.no_grad():
        k = model.W_K[:S][batch.values] + (model.W_E @ model.W_K[S:])[batch.keys] + model.b_K
    for b, i in [(0, 0), (1, S - 1)]:
        want = _favor_by_hand(k[b, i], omega, scale)
        assert torch.allclose(cache["hook_k"][b, i].double(), want, rtol=1e-5, atol=1e-7)
    if orthogonal:
        gram = omega.T @ omega
        assert torch.allclose(gram[:d, :d], torch.diag(gram[:d, :d].diagonal()), atol=1e-5)
    y1 = model(batch.keys, batch.values, batch.queries)
    y2 = model(batch.keys, batch.values, batch.queries)
    assert torch.equal(y1, y2) != redraw  # only a redrawing model changes between calls
    assert RetrieverConfig.from_dict(cfg.to_dict()) == cfg


def test_unset_choices_keep_the_two_original_variants_and_bad_values_are_refused():
    base = dict(num_keys=5, d_embed=5, d_head=4, feature_map="favor", favor_features=6, seed=2)
    assert RetrieverConfig(**base).favor_choices == (False, False, True)  # the workbench FeatureMap
    assert RetrieverConfig(**base, favor_redraw=True).favor_choices == (True, True, False)  # the paper's code
    assert RetrieverConfig(**base).label == "FAVOR+ (6)"
    assert RetrieverConfig(**base, favor_scale=False).label == "FAVOR+ (6, fixed, Gaussian, unscaled)"
    # fixed, Gaussian, scaled set explicitly is the FeatureMap model itself, parameters and φ alike
    batch = Retrieval(num_keys=5, setting=1).sample(2, torch.Generator().manual_seed(1), all_queries=True)
    a = HookedRetriever(RetrieverConfig(**base))
    b = HookedRetriever(RetrieverConfig(**base, favor_orthogonal=False, favor_scale=True))
    assert torch.equal(a(batch.keys, batch.values, batch.queries), b(batch.keys, batch.values, batch.queries))
    # fixed Gaussian unscaled draws the FeatureMap's projection: the two differ only by the input scaling
    c = HookedRetriever(RetrieverConfig(**base, favor_scale=False))
    assert torch.equal(c.favor_projection, a.phi.projection[0])
    for bad in (dict(feature_map="dpfp", favor_orthogonal=True), dict(feature_map="elu1", favor_scale=False),
                dict(feature_map="favor", favor_scale=1)):
        with pytest.raises(ValueError, match="favor_orthogonal|favor_scale"):
            RetrieverConfig(num_keys=5, d_embed=5, **bad)


def test_the_favor_part_is_a_balanced_seeded_2x2x2_with_the_main_studys_budget():
    from case_studies.capacity.config import FAVOR_PART, FAVOR_PART_QUICK, FULL, PARTS, Run, Model

    names = [r.name for r in FAVOR_PART.runs]
    assert len(names) == len(set(names)) and PARTS["favor"] == (FAVOR_PART, FAVOR_PART_QUICK)
    json.dumps(FAVOR_PART.to_dict())
    assert FAVOR_PART.train == FULL.train  # the same 2000-step protocol as the main study's FAVOR+ runs
    cells = {}
    for r in FAVOR_PART.runs:
        cells.setdefault(r.model.retriever(r.num_keys, 0).favor_choices, set()).add((r.num_keys, r.seed))
    assert set(cells) == set(CHOICES)
    grids = set(map(frozenset, cells.values()))
    assert len(grids) == 1 and len({seed for _, seed in next(iter(grids))}) >= 3  # every cell: every S × seed
    # the unscaled 2 × 2 (the paper's input) runs before the scaled one
    scaled = [r.model.retriever(r.num_keys, 0).favor_choices[2] for r in FAVOR_PART.runs]
    assert scaled == sorted(scaled)
    assert Run(1, 20, Model("favor", favor_redraw=True)).name == "s1-S20-favor64-redraw-sum"  # main names unchanged
    assert Run(1, 20, Model("favor", favor_orthogonal=True, favor_scale=False), 2).name == \
        "s1-S20-favor64-fixed-orth-unscaled-sum-seed2"


def test_a_runs_seed_sets_init_features_and_data():
    from case_studies.capacity.config import Model, Run, Study
    from case_studies.capacity.run import execute
    from workbench.retrieval.training import RetrieverTrainConfig

    study = Study(runs=(), train=RetrieverTrainConfig(max_steps=20, eval_every=10, eval_sequences=2, seed=1),
                  probe_sequences=2, seed=1)
    model = Model("favor", favor_features=8, favor_orthogonal=True, favor_scale=False)
    e1, e1b, e2 = (execute(Run(1, 5, model, s), study, progress=False) for s in (1, 1, 2))
    assert e1["seed"] == 1 and e2["seed"] == 2 and e1["favor_choices"] == [False, True, False]
    assert e1["history"] == e1b["history"] and e1["history"] != e2["history"]
    e0 = execute(Run(1, 5, model), study, progress=False)  # no seed: the study's
    assert e0["seed"] == 1 and e0["history"] == e1["history"]


def _runs(losses: dict) -> list[dict]:
    return [{"name": f"r{i}", "num_keys": S, "seed": seed, "favor_choices": list(c), "final_eval_loss": loss,
             "final_eval_acc": 1.0, "stop": "target", "steps": 100}
            for i, ((S, seed, c), loss) in enumerate(losses.items())]


def test_effects_recover_known_main_effects_and_interaction():
    from case_studies.capacity.favor_part import cell_stats, effects, frame, tables

    rng = np.random.default_rng(0)
    losses = {}
    for seed in (1, 2, 3, 4):
        shift = rng.normal(0, 0.05)  # a seed's effect, shared by its cells: paired contrasts remove it
        for redraw, orthogonal, scale in CHOICES:
            noise = rng.normal(0, 0.002)
            losses[(40, seed, (redraw, orthogonal, scale))] = (0.1 + shift + 0.3 * redraw + 0.1 * (redraw and orthogonal)
                                                               + 0.02 * scale + noise)
    df = frame(_runs(losses))
    eff = effects(df).set_index(["input", "contrast"])
    unscaled = eff.loc["unscaled"]
    assert abs(unscaled.loc["redraw", "mean"] - 0.35) < 0.01 and unscaled.loc["redraw", "p"] < 0.001
    assert abs(unscaled.loc["orthogonal", "mean"] - 0.05) < 0.01
    assert abs(unscaled.loc["interaction", "mean"] - 0.1) < 0.01
    assert abs(unscaled.loc["orthogonal (fixed only)", "mean"]) < 0.01 and unscaled.loc["orthogonal (fixed only)", "p"] > 0.01
    assert abs(eff.loc[("both", "scale"), "mean"] - 0.02) < 0.005
    for _, e in effects(df).iterrows():
        assert e["lo"] <= e["mean"] <= e["hi"] and e["n"] == 4
    cells = cell_stats(df)
    assert len(cells) == 8 and (cells["n"] == 4).all() and (cells["lo"] < cells["mean"]).all()
    text = tables({"runs": _runs(losses)})
    assert "| unscaled | 40 | interaction | 4 |" in text and "## Input scaled by d^-¼" in text
    with pytest.raises(ValueError, match="favor_choices"):
        frame([{"name": "s1-S20-elu1-sum", "favor_choices": None}])


@pytest.mark.integration
def test_favor_part_quick_mode_writes_its_tables_and_figure(tmp_path):
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "case_studies.capacity", "--part", "favor", "--quick", "--no-png", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seconds = time.perf_counter() - start
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["part"] == "favor" and "--part favor" in results["command"]
    assert {tuple(r["favor_choices"]) for r in results["runs"]} == {(a, b, False) for a in (True, False)
                                                                  for b in (True, False)}
    assert {r["seed"] for r in results["runs"]} == {1, 2}
    assert results["figures"] == ["favor_loss_vs_S"] and (tmp_path / "favor_loss_vs_S.html").stat().st_size > 10_000
    text = (tmp_path / "tables.md").read_text()
    assert "Effects on the final loss" in text and "| unscaled | 8 | redraw | 2 |" in text
    replot = subprocess.run(cmd[:3] + ["--part", "favor", "--replot", "--no-png", "--out", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert replot.returncode == 0 and (tmp_path / "tables.md").read_text() == text
    assert seconds < 60, f"--part favor --quick took {seconds:.0f} s"
