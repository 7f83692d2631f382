"""The memorization study's statistics against closed forms, and the pooling of seeds on hand-built runs."""

from __future__ import annotations

import math

import pytest

from case_studies.memorization.pooled import canary_outcomes, compare, methods, seed_differences, summary_row
from case_studies._stats import bootstrap_mean_ci, mcnemar, paired_t, t_quantile, wilcoxon, wilson


def test_mcnemar_is_the_exact_binomial_on_discordant_pairs():
    assert mcnemar([1, 1, 1, 0, 1], [0, 0, 0, 0, 1]) == {"only_a": 3, "only_b": 0, "p": 0.25}  # 2 · (1/2)³
    assert mcnemar([1, 0, 1, 0], [0, 1, 0, 1])["p"] == 1.0
    assert mcnemar([1, 1], [1, 1]) == {"only_a": 0, "only_b": 0, "p": 1.0}
    p = mcnemar([1] * 9 + [0], [0] * 9 + [1])["p"]  # 9 against 1 of 10
    assert p == pytest.approx(2 * (1 + 10) / 2 ** 10)
    with pytest.raises(ValueError, match="paired"):
        mcnemar([1, 0], [1])


def test_wilcoxon_matches_the_normal_approximation_by_hand():
    got = wilcoxon([1, 2, 3, 4, 5], [0, 0, 0, 0, 0])
    z = (15 - 7.5) / math.sqrt(5 * 6 * 11 / 24)
    assert got["w_plus"] == 15 and got["z"] == pytest.approx(z) and got["p"] == pytest.approx(math.erfc(z / 2 ** .5))
    tied = wilcoxon([1, 1, -1, 2, 0], [0, 0, 0, 0, 0])  # zero dropped; |d| ties share rank 2
    assert tied["n"] == 4 and tied["w_plus"] == 2 + 2 + 4
    assert wilcoxon([1, 2], [1, 2])["p"] == 1.0


def test_t_quantiles_and_the_paired_t_test():
    for df, q in ((2, 4.302653), (9, 2.262157), (30, 2.042272)):
        assert t_quantile(0.975, df) == pytest.approx(q, abs=1e-4)
    got = paired_t([1, 2, 3], [0, 0, 0])
    t = 2 / (1 / math.sqrt(3))
    assert got["mean"] == 2 and got["p"] == pytest.approx(2 * (0.5 - t / (2 * math.sqrt(2 + t * t))), abs=1e-5)
    assert got["lo"] == pytest.approx(2 - 4.302653 / math.sqrt(3), abs=1e-4)
    with pytest.raises(ValueError, match="2 pairs"):
        paired_t([1], [0])


def test_bootstrap_resamples_within_strata_and_wilson_interval():
    assert bootstrap_mean_ci([0] * 10 + [1] * 10, [0] * 10 + [1] * 10) == (0.5, 0.5, 0.5)  # each stratum constant
    mean, lo, hi = bootstrap_mean_ci([0] * 10 + [1] * 10)
    assert mean == 0.5 and lo < 0.4 and hi > 0.6
    lo, hi = wilson(0, 10)
    assert lo == pytest.approx(0.0, abs=1e-12) and hi == pytest.approx(0.2775, abs=1e-4)


K, S = "K-FAC x", "SVD x"


def run(seed: int, kfac: list[int], svd: list[int], nll_k: list[float], svd_rho=0.5, random=None) -> dict:
    """A hand-built run: memorized canaries 0..n−1 recited (1) or not under each edit at its headline."""
    n = len(kfac)
    pc = [{"variant": "unedited", "rho": 1.0, "canary": i, "strict": True, "loose": True, "nll": 0.1} for i in range(n)]
    sweep = [{"variant": "unedited", "method": "none", "rho": 1.0, "ppl_ratio": 1.0, "top10_agreement": 1.0,
              "weight_rel_change": 0.0}]
    for name, method, rho, outs, nll in ((K, "kfac", 0.4, kfac, nll_k), (S, "svd", svd_rho, svd, [1.0] * n)):
        for r in (0.9, rho):
            sweep.append({"variant": name, "method": method, "rho": r, "ppl_ratio": 1.1, "top10_agreement": 0.8,
                          "weight_rel_change": 0.5})
            pc += [{"variant": name, "rho": r, "canary": i, "strict": bool(outs[i]) if r == rho else True,
                    "loose": True, "nll": nll[i]} for i in range(n)]
    for d, outs in enumerate(random or []):
        name = f"random (draw {d})"
        sweep.append({"variant": name, "method": "random", "rho": 0.4, "ppl_ratio": 2.0, "top10_agreement": 0.5,
                      "weight_rel_change": 0.9})
        pc += [{"variant": name, "rho": 0.4, "canary": i, "strict": bool(outs[i]), "loose": False, "nll": 3.0}
               for i in range(n)]
    return {"run": {"mixer": "softmax", "seed": seed}, "sweep": sweep, "per_canary": pc,
            "headline": {K: 0.4, S: svd_rho}, "memorized": list(range(n))}


def test_pooling_pairs_the_same_canaries_across_seeds():
    runs = [run(1, [0, 0, 1], [1, 1, 1], [2.0, 2.0, 1.0], random=[[1, 1, 0], [1, 0, 0]]),
            run(2, [0, 1], [1, 1], [2.0, 1.0], random=[[1, 1], [1, 1]])]
    assert [k for k, _ in methods(runs[0])] == [K, S, "random"]
    one = canary_outcomes(runs[0], "random")
    assert one.strict.tolist() == [1.0, 0.5, 0.0]  # mean over draws
    c = compare(runs, "softmax", K, S)
    assert c["n"] == 5 and (c["only_a"], c["only_b"]) == (0, 3) and c["strict_p"] == pytest.approx(0.25)
    assert c["strict_a"] == pytest.approx(2 / 5) and c["d_strict"][0] == pytest.approx(-3 / 5)
    assert c["d_nll"][0] == pytest.approx((1 + 1 + 0 + 1 + 0) / 5)
    r = compare(runs, "softmax", K, "random")
    assert r["strict_test"] == "Wilcoxon" and r["only_a"] is None
    s = summary_row(runs, "softmax", S)
    assert s["rhos"] == [0.5, 0.5] and s["n"] == 5 and s["strict"][0] == 1.0 and s["ppl_ratio"] == [1.1, 1.1]
    d = seed_differences(runs, "softmax", K, S)
    assert d["diffs"] == pytest.approx([1 / 3 - 1, 0.5 - 1]) and d["n"] == 2
    no = [run(1, [0], [1], [1.0], svd_rho=None), run(2, [0], [1], [1.0])]
    assert compare(no, "softmax", K, S) is None and "n" not in summary_row(no, "softmax", S)
