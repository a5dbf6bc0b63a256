"""Does D predict image quality? Across the plans of a sweep, Spearman's rho of each plan's D (every
plan scored on Skrr's default yardstick, `row["discrepancy"]`, skrr.experiments.runner.plan_d) against each
quality metric, with a 95% percentile-bootstrap interval over plans.

Pruned plans only: the dense model (D = 0) would add one point that agrees with every metric. Rows
are taken as a whole; two methods that land on the same plan count twice, as in the matched table.
"All levels" mixes sparsities, where D and quality both follow sparsity; the per-level rows (plans
asked for the same paper level) ask the search's question: among plans of one size, does lower D
mean better images? The interval covers the choice of plans, not each metric's own seed noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from skrr.experiments.report.compare import LEVELS, MARKERS, estimate

RESAMPLES = 2000
MIN_PLANS = 6  # with fewer, the bootstrap interval of a rank correlation spans nearly [-1, 1]
# (metric, task, name, higher is better)
METRICS = [("dreamsim", None, "Similarity to dense", True), ("geneval", "overall", "GenEval overall", True),
           ("geneval", "single_object", "GenEval single object", True), ("geneval", "two_object", "GenEval two objects", True),
           ("geneval", "counting", "GenEval counting", True), ("geneval", "colors", "GenEval colours", True),
           ("geneval", "position", "GenEval position", True), ("geneval", "color_attr", "GenEval colour attribution", True),
           ("geneval2", "overall", "GenEval 2 Soft-TIFA GM", True),
           ("fid", None, "FID", False), ("clip", None, "CLIP score", True)]


@dataclass
class Rank:
    metric: str
    scope: str          # "all levels" or "24%" ...
    plans: int
    rho: float
    lo: float
    hi: float
    higher_is_better: bool

    @property
    def verdict(self) -> str:
        """A sentence: does lower D go with better values of this metric, in this sweep?"""
        better = "higher" if self.higher_is_better else "lower"
        good = self.hi < 0 if self.higher_is_better else self.lo > 0   # lower D, better metric
        bad = self.lo > 0 if self.higher_is_better else self.hi < 0
        ci = f"rho {self.rho:+.2f}, 95% interval [{self.lo:+.2f}, {self.hi:+.2f}], {self.plans} plans"
        if good:
            return f"{self.metric} ({self.scope}): D predicts it: lower D goes with {better} {self.metric} ({ci})."
        if bad:
            return f"{self.metric} ({self.scope}): D ranks it the wrong way: lower D goes with worse {self.metric} ({ci})."
        return f"{self.metric} ({self.scope}): no evidence that D predicts it here; the interval includes 0 ({ci})."


def spearman(x, y) -> float:
    """Spearman's rho: Pearson's correlation of the ranks (ties get their average rank)."""
    from scipy.stats import rankdata

    rx, ry = rankdata(x), rankdata(y)
    if rx.std() == 0 or ry.std() == 0:
        return float("nan")  # a constant side: no ranking to compare
    return float(np.corrcoef(rx, ry)[0, 1])


def rank_interval(x, y, resamples: int = RESAMPLES, seed: int = 0, level: float = 0.95) -> tuple[float, float, float]:
    """rho and its percentile-bootstrap interval, resampling plans (pairs) with replacement;
    resamples where one side is constant have no rho and are left out."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rng = np.random.default_rng(seed)
    rho = spearman(x, y)
    draws = [spearman(x[i], y[i]) for i in (rng.integers(0, len(x), len(x)) for _ in range(resamples))]
    draws = np.array([d for d in draws if not math.isnan(d)])
    if math.isnan(rho) or len(draws) < resamples / 2:
        return rho, float("nan"), float("nan")
    a = (1 - level) / 2
    return rho, float(np.quantile(draws, a)), float(np.quantile(draws, 1 - a))


def d_of(row: dict) -> float | None:
    d = row.get("discrepancy")
    return float(d["value"]) if isinstance(d, dict) and isinstance(d.get("value"), (int, float)) else None


def plans_of(rows: list[dict]) -> list[dict]:
    """The pruned rows that carry D (the dense noise-floor rows and dense are not plans to rank)."""
    return [r for r in rows if r["sparsity"] > 0 and d_of(r) is not None and not r.get("seed_offset")]


def ranks(rows: list[dict]) -> list[Rank]:
    plans = plans_of(rows)
    scopes = [("all levels", plans)] + [(f"{level:.0%}", [r for r in plans if abs(r["target"] - level) < 1e-6])
                                        for level in LEVELS]
    out = []
    for name, task, title, higher in METRICS:
        for scope, group in scopes:
            pts = [(d_of(r), estimate(r, name, task)) for r in group]
            pts = [(d, e.value) for d, e in pts if e is not None and math.isfinite(e.value)]
            if len(pts) < MIN_PLANS:
                continue
            rho, lo, hi = rank_interval([p[0] for p in pts], [p[1] for p in pts])
            if not math.isnan(lo):
                out.append(Rank(title, scope, len(pts), rho, lo, hi, higher))
    return out


def markdown(found: list[Rank], title: str) -> str:
    if not found:
        return ""
    lines = [f"### {title}: does D predict quality? (Spearman's rho of D vs each metric over pruned plans, "
             f"95% bootstrap interval over plans)\n",
             "| Metric | Plans at | Plans | rho | 95% interval | Lower D goes with |", "|---|---|---|---|---|---|"]
    for r in found:
        good = r.hi < 0 if r.higher_is_better else r.lo > 0
        bad = r.lo > 0 if r.higher_is_better else r.hi < 0
        says = "better (D predicts it)" if good else "worse" if bad else "either (interval includes 0)"
        lines.append(f"| {r.metric} | {r.scope} | {r.plans} | {r.rho:+.2f} | [{r.lo:+.2f}, {r.hi:+.2f}] | {says} |")
    lines += ["", "In words (D is Skrr's default discrepancy of each plan on the sweep's calibration set; "
              "better = higher, FID lower):", ""]
    lines += [f"- {r.verdict}" for r in found if r.scope == "all levels" or r.metric in ("Similarity to dense",
                                                                                      "GenEval overall", "FID")]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], found: list[Rank], path: Path, title: str) -> Path | None:
    """One panel per metric: D (log scale) against the metric with its 95% interval, one marker per label."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter


    plans = plans_of(rows)
    panels = [(n, t, title_, h) for n, t, title_, h in METRICS
              if any(r.metric == title_ and r.scope == "all levels" for r in found)]
    if not panels:
        return None
    cols = 3
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, squeeze=False, figsize=(4.2 * cols, 3.2 * nrows + 0.6), dpi=110)
    labels = sorted({r["label"] for r in plans})
    for ax, (name, task, mtitle, _) in zip(axes.flat, panels):
        for n, label in enumerate(labels):
            pts = [(d_of(r), estimate(r, name, task)) for r in plans if r["label"] == label]
            pts = [(d, e) for d, e in pts if e is not None]
            if not pts:
                continue
            err = None if any(e.lo is None for _, e in pts) else \
                [[e.value - e.lo for _, e in pts], [e.hi - e.value for _, e in pts]]
            ax.errorbar([d for d, _ in pts], [e.value for _, e in pts], yerr=err, marker=MARKERS[n % len(MARKERS)],
                        linestyle="none", alpha=0.8, capsize=2, label=label)
        rank = next(r for r in found if r.metric == mtitle and r.scope == "all levels")
        ax.set_xscale("log")
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))  # a few labels, never crowded
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_title(f"{mtitle}\nrho {rank.rho:+.2f} [{rank.lo:+.2f}, {rank.hi:+.2f}]", fontsize=9)
        ax.set_xlabel("D of the plan (Skrr's default)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=min(len(names), 6), fontsize=8, frameon=False)
    fig.suptitle(f"{title}: D vs quality over pruned plans (95% intervals; rho over all levels)", fontsize=10)
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(names) > 6), 1, 0.97))
    fig.savefig(path)
    plt.close(fig)
    return path
