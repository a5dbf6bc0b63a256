"""95% intervals for the numbers in a results row.

- `bootstrap_mean`: percentile bootstrap of a mean over prompts. Images of one prompt (GenEval's
  4 seeds) resample together (`clusters`), and with `strata` (GenEval's tasks) each stratum is
  resampled within itself and the statistic is the mean of the stratum means: GenEval's overall,
  whose design fixes the number of prompts per task.
- `paired_difference`: the same resamples applied to two methods' scores on the same prompts and
  seeds, so the prompt-to-prompt variation they share cancels (a tighter interval than comparing
  two marginal ones).
- `bootstrap_statistic` / `paired_statistic`: the same for any statistic of per-image rows that is
  not a mean (FID of per-image features).
- `wilson`: the closed-form score interval of a Bernoulli rate (k successes out of n).

Resampling uses weights (how often each cluster is drawn in a resample), seeded, so an
interval is reproducible and two metrics bootstrapped with the same seed share their resamples.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from skrr.errors import InputError

LEVEL = 0.95
RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    value: float
    lo: float
    hi: float

    @property
    def half_width(self) -> float:
        return (self.hi - self.lo) / 2

    def excludes(self, x: float = 0.0) -> bool:
        return x < self.lo or x > self.hi

    def as_dict(self) -> dict:
        return {"value": self.value, "ci": [self.lo, self.hi]}


def z_value(level: float = LEVEL) -> float:
    return NormalDist().inv_cdf(0.5 + level / 2)


def normal_half_width(p: float, n: int, level: float = LEVEL) -> float:
    """z * sqrt(p(1-p)/n): the normal approximation of a Bernoulli rate's interval half-width."""
    return z_value(level) * math.sqrt(p * (1 - p) / n)


def wilson(k: int, n: int, level: float = LEVEL) -> Interval:
    """Wilson score interval of k successes in n trials; stays inside [0, 1] and is sane at k = 0 or n."""
    if n <= 0 or not 0 <= k <= n:
        raise InputError(f"wilson needs 0 <= k <= n and n > 0, got k={k}, n={n}")
    z, p = z_value(level), k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at k = 0 (k = n) the bound is exactly 0 (1); say so instead of leaving float round-off
    return Interval(p, 0.0 if k == 0 else centre - half, 1.0 if k == n else centre + half)


# --- resampling design ------------------------------------------------------------------------
def _check_level(level: float, resamples: int) -> None:
    if not 0 < level < 1:
        raise InputError(f"interval level must be in (0, 1), got {level}")
    if resamples < 10:
        raise InputError(f"a bootstrap needs at least 10 resamples, got {resamples}")


def _strata(n: int, clusters, strata) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per stratum (first-seen order): its item indices and each item's cluster code 0..C-1."""
    clusters = np.arange(n) if clusters is None else np.asarray(clusters)
    strata = np.zeros(n, dtype=int) if strata is None else np.asarray(strata)
    if len(clusters) != n or len(strata) != n:
        raise InputError(f"clusters and strata need one label per item ({n}), got {len(clusters)} and {len(strata)}")
    out = []
    for s in dict.fromkeys(strata.tolist()):
        idx = np.flatnonzero(strata == s)
        _, first, code = np.unique(clusters[idx], return_index=True, return_inverse=True)
        rank = np.empty(len(first), dtype=int)
        rank[np.argsort(first)] = np.arange(len(first))  # codes in first-seen order, whatever the labels' type
        out.append((idx, rank[code.reshape(-1)]))
    return out


def _resample_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """(resamples, n): how often each of n clusters is drawn in each resample (n draws with replacement)."""
    draws = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(draws.ravel(), minlength=resamples * n).reshape(resamples, n).astype(float)


def balanced_mean(values, strata=None) -> float:
    """Mean of the stratum means (one stratum: the plain mean); GenEval's overall over its tasks."""
    v = np.asarray(values, dtype=np.float64)
    if strata is None:
        return float(v.mean())
    strata = np.asarray(strata)
    return float(np.mean([v[strata == s].mean() for s in dict.fromkeys(strata.tolist())]))


def _percentile(estimate: float, replicates: np.ndarray, level: float) -> Interval:
    lo, hi = np.quantile(replicates, [(1 - level) / 2, (1 + level) / 2])
    return Interval(float(estimate), float(lo), float(hi))


def mean_replicates(values, clusters=None, strata=None, resamples: int = RESAMPLES, seed: int = 0):
    """(estimate (k,), replicates (resamples, k)) of the mean of stratum means, for each column of
    `values` (n,) or (n, k); every column sees the same resamples (pairing)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[:, None] if v.ndim == 1 else v
    if len(v) == 0:
        raise InputError("no per-item values to bootstrap")
    if not np.isfinite(v).all():
        raise InputError("per-item values hold NaN or inf; a bootstrap of them would be meaningless")
    rng = np.random.default_rng(seed)
    estimate, replicates = np.zeros(v.shape[1]), np.zeros((resamples, v.shape[1]))
    groups = _strata(len(v), clusters, strata)
    for idx, code in groups:
        n_clusters = code.max() + 1
        sums = np.zeros((n_clusters, v.shape[1]))
        np.add.at(sums, code, v[idx])                          # per cluster (prompt): sum and count
        counts = np.bincount(code, minlength=n_clusters).astype(float)
        weights = _resample_counts(rng, n_clusters, resamples)
        estimate += sums.sum(0) / counts.sum()
        replicates += (weights @ sums) / (weights @ counts)[:, None]
    return estimate / len(groups), replicates / len(groups)


def bootstrap_mean(values, clusters=None, strata=None, resamples: int = RESAMPLES, seed: int = 0,
                   level: float = LEVEL) -> Interval:
    """Percentile-bootstrap interval of the (stratum-balanced) mean of per-item values."""
    _check_level(level, resamples)
    est, reps = mean_replicates(values, clusters, strata, resamples, seed)
    return _percentile(est[0], reps[:, 0], level)


def paired_difference(a, b, clusters=None, strata=None, resamples: int = RESAMPLES, seed: int = 0,
                      level: float = LEVEL) -> Interval:
    """Interval of mean(a) - mean(b) for two methods scored on the same items (prompt and seed)."""
    _check_level(level, resamples)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"a paired comparison needs scores of the same items, got {a.shape} and {b.shape}")
    est, reps = mean_replicates(np.stack([a, b], 1), clusters, strata, resamples, seed)
    return _percentile(est[0] - est[1], reps[:, 0] - reps[:, 1], level)


# --- any statistic of per-item rows (FID) ------------------------------------------------------
def _debiased(estimate: float, replicates: np.ndarray, level: float) -> Interval:
    """Percentile interval shifted by the bootstrap's bias (median replicate - estimate). FID on a
    resample is biased upwards (a resample repeats images, so its covariance has fewer directions);
    the shift keeps the interval's width and centres it where the estimate is."""
    return _percentile(estimate, replicates - (np.median(replicates) - estimate), level)


def _row_resamples(n: int, resamples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_statistic(rows: np.ndarray, statistic: Callable[[np.ndarray], float], resamples: int = 200,
                        seed: int = 0, level: float = LEVEL) -> Interval:
    """Bootstrap of statistic(rows) over the rows (items), for statistics that are no mean: the
    percentile interval, shifted by the bootstrap's estimate of the statistic's bias."""
    _check_level(level, resamples)
    rows = np.asarray(rows)
    reps = np.array([statistic(rows[i]) for i in _row_resamples(len(rows), resamples, seed)])
    return _debiased(statistic(rows), reps, level)


def paired_statistic(rows_a: np.ndarray, rows_b: np.ndarray, statistic: Callable[[np.ndarray], float],
                     resamples: int = 200, seed: int = 0, level: float = LEVEL,
                     statistic_b: Callable[[np.ndarray], float] | None = None) -> Interval:
    """Interval of statistic(a) - statistic_b(b) (default: the same statistic), both sides resampled
    with the same item indices."""
    _check_level(level, resamples)
    if len(rows_a) != len(rows_b):
        raise InputError(f"a paired comparison needs the same items, got {len(rows_a)} and {len(rows_b)} rows")
    stat_b = statistic_b or statistic
    reps = np.array([statistic(rows_a[i]) - stat_b(rows_b[i]) for i in _row_resamples(len(rows_a), resamples, seed)])
    return _debiased(statistic(rows_a) - stat_b(rows_b), reps, level)


def geneval_intervals(correct: Sequence, tags: Sequence[str], prompts: Sequence[str] | None = None,
                      resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL) -> dict[str, Interval]:
    """Each task's accuracy and the overall (mean of task accuracies), prompts resampled within tasks."""
    correct, tags = np.asarray(correct, dtype=float), np.asarray(tags)
    out = {t: bootstrap_mean(correct[tags == t], None if prompts is None else np.asarray(prompts)[tags == t],
                             resamples=resamples, seed=seed, level=level) for t in dict.fromkeys(tags.tolist())}
    out["overall"] = bootstrap_mean(correct, prompts, tags, resamples, seed, level)
    return out
