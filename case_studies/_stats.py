"""Paired tests and intervals shared by the case studies (no scipy: small, exact formulas), first written for
comparing two edits on the same canaries (memorization); the capacity study's FAVOR+ part uses them too.

- :func:`mcnemar`: exact two-sided McNemar test (binomial on the discordant pairs) for strict recitation.
- :func:`wilcoxon`: Wilcoxon signed-rank test (zeros dropped, normal approximation with tie correction)
  for paired losses.
- :func:`paired_t`: mean difference with a t interval and a two-sided p (paired t test).
- :func:`t_interval`: a mean over seeds with its t interval (unpaired).
- :func:`bootstrap_mean_ci`: percentile bootstrap interval of a mean, resampling within strata (seeds).
- :func:`wilson`: the Wilson score interval of a proportion.
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import numpy as np


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2))


def mcnemar(a: Sequence[bool], b: Sequence[bool]) -> dict:
    """Exact McNemar test of paired binary outcomes: ``only_a`` (a true, b false), ``only_b`` and the
    two-sided p = min(1, 2·P[Bin(n, ½) ≤ min(only_a, only_b)]) with n the discordant pairs."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be 1-D and paired, got shapes {a.shape} and {b.shape}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    n = only_a + only_b
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n if n else 1.0
    return {"only_a": only_a, "only_b": only_b, "p": min(1.0, 2 * tail)}


def wilcoxon(x: Sequence[float], y: Sequence[float]) -> dict:
    """Wilcoxon signed-rank test of x − y (two-sided; zero differences dropped; average ranks for ties;
    normal approximation with the tie-corrected variance): ``n`` (non-zero pairs), ``w_plus``, ``z``, ``p``."""
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    d = d[d != 0]
    n = len(d)
    if n == 0:
        return {"n": 0, "w_plus": 0.0, "z": 0.0, "p": 1.0}
    order = np.argsort(np.abs(d), kind="stable")
    ranks = np.empty(n)
    absd = np.abs(d)[order]
    i = 0
    ties = 0.0
    while i < n:
        j = i
        while j + 1 < n and absd[j + 1] == absd[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        t = j - i + 1
        ties += t ** 3 - t
        i = j + 1
    w_plus = float(ranks[d > 0].sum())
    mean = n * (n + 1) / 4
    var = n * (n + 1) * (2 * n + 1) / 24 - ties / 48
    z = (w_plus - mean) / math.sqrt(var) if var > 0 else 0.0
    return {"n": n, "w_plus": w_plus, "z": z, "p": min(1.0, 2 * _normal_sf(abs(z)))}


def _t_cdf(t: float, df: int) -> float:
    """P[T ≤ t] for Student's t with ``df`` degrees of freedom (Simpson's rule on the density)."""
    if t < 0:
        return 1 - _t_cdf(-t, df)
    c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
    n = 2000
    h = t / n
    f = [c * (1 + (k * h) ** 2 / df) ** (-(df + 1) / 2) for k in range(n + 1)]
    return 0.5 + h / 3 * (f[0] + f[-1] + 4 * sum(f[1:-1:2]) + 2 * sum(f[2:-1:2]))


@functools.lru_cache(maxsize=None)  # 100 numeric cdfs per call; tables ask for the same few (p, df) many times
def t_quantile(p: float, df: int) -> float:
    """The p-quantile (p in (½, 1)) of Student's t with ``df`` degrees of freedom, by bisection."""
    if not 0.5 < p < 1 or df < 1:
        raise ValueError(f"need ½ < p < 1 and df ≥ 1, got p={p}, df={df}")
    lo, hi = 0.0, 1000.0
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _t_cdf(mid, df) < p else (lo, mid)
    return (lo + hi) / 2


def paired_t(x: Sequence[float], y: Sequence[float], level: float = 0.95) -> dict:
    """Mean of x − y with its t interval and the paired t test's two-sided p (``n`` pairs; n ≥ 2)."""
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    n = len(d)
    if n < 2:
        raise ValueError(f"a paired t test needs at least 2 pairs, got {n}")
    mean, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(n))
    q = t_quantile(0.5 + level / 2, n - 1)
    if se == 0:
        return {"n": n, "mean": mean, "lo": mean, "hi": mean, "p": 1.0 if mean == 0 else 0.0}
    p = 2 * (1 - _t_cdf(abs(mean / se), n - 1))
    return {"n": n, "mean": mean, "lo": mean - q * se, "hi": mean + q * se, "p": max(0.0, min(1.0, p))}


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean and its two-sided t interval; lo = hi = NaN with fewer than two values (and
    mean NaN with none)."""
    values = np.asarray(values, dtype=float)
    mean = float(values.mean()) if len(values) else math.nan
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(0.5 + level / 2, len(values) - 1) * float(values.std(ddof=1)) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def bootstrap_mean_ci(values: Sequence[float], strata: Optional[Sequence] = None, n_boot: int = 4000,
                      level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): percentile bootstrap of the mean of ``values``, resampling with replacement within
    each stratum (e.g. the seed a canary's model was trained with), so each stratum keeps its size."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        raise ValueError("no values to bootstrap")
    s = np.zeros(len(v), dtype=int) if strata is None else np.unique(np.asarray(strata), return_inverse=True)[1]
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(s == g) for g in np.unique(s)]
    means = np.zeros(n_boot)
    for g in groups:
        means += v[g][rng.integers(0, len(g), size=(n_boot, len(g)))].sum(1)
    means /= len(v)
    a = (1 - level) / 2
    return float(v.mean()), float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def wilson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials."""
    if n == 0:
        return float("nan"), float("nan")
    z = {0.95: 1.959963984540054}.get(level)
    if z is None:
        raise ValueError("wilson supports level=0.95 only")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half
