"""Methods at matched sparsity, and which of their differences are larger than their noise.

A result row's metric is a number (old rows) or {"value", "ci": [lo, hi]}; GenEval holds one per
task and "overall". `artifacts.items.<metric>` points at its per-image scores (skrr.eval.per_item).

- `matched(rows, levels)`: per label and level, the label's point there: its row at that achieved
  sparsity ("at"), a linear interpolation between its two achieved points that bracket the level
  ("interp"), or outside its range its nearest achieved point, whose sparsity is shown ("nearest").
- `difference(a, b, metric)`: a - b with a 95% interval. Paired when both points have per-image
  scores of the same prompts and seeds (the same bootstrap resamples for both; interpolated points
  pair through their per-image combinations); otherwise the two marginal intervals, and a difference
  counts as larger than the noise only when they do not overlap.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from skrr.eval.intervals import LEVEL, Interval, paired_difference, paired_statistic
from skrr.eval.per_item import Items

LEVELS = (0.24, 0.32, 0.40)  # the paper's Table 1 sparsities
DENSE = "dense"  # the reference rows' method: conf/method/dense.yaml's name, as each row records it
METHOD_ORDER = [DENSE, "shortgpt", "laco", "finercut", "skrr"]
METHOD_NAMES = {DENSE: "Dense", "shortgpt": "ShortGPT", "laco": "LaCo", "finercut": "FinerCut", "skrr": "Skrr"}
MARKERS = ["o", "s", "^", "D", "v", "P", "X"]  # one per method in every plot


def is_dense(row: dict, noise_floor: bool = True) -> bool:
    """A row of the unpruned reference (`noise_floor=False`: not its second, seed-shifted image set)."""
    return row["method"] == DENSE and (noise_floor or not row.get("seed_offset"))
AT = 0.005                   # an achieved point within half a percent of a level stands for it
LOWER_IS_BETTER = {"fid"}
COMPARED = [("geneval", "GenEval overall"), ("geneval2", "GenEval 2 Soft-TIFA GM"), ("dreamsim", "Similarity to dense"),
            ("clip", "CLIP"), ("fid", "FID")]


@dataclass(frozen=True)
class Estimate:
    value: float
    lo: float | None = None
    hi: float | None = None

    @property
    def half_width(self) -> float | None:
        return None if self.lo is None else (self.hi - self.lo) / 2


def estimate(row: dict, name: str, task: str | None = None) -> Estimate | None:
    """The row's metric (GenEval, GenEval 2: overall unless a task is named) with its interval, if it has one."""
    m = row["metrics"].get(name)
    if name in ("geneval", "geneval2"):
        m = (m or {}).get(task or "overall")
    if isinstance(m, bool):
        return None
    if isinstance(m, (int, float)):
        return Estimate(float(m))
    if isinstance(m, dict) and isinstance(m.get("value"), (int, float)):
        ci = m.get("ci") or (None, None)
        return Estimate(float(m["value"]), *(None if c is None else float(c) for c in ci))
    return None


@lru_cache(maxsize=256)
def _load_items(path: str) -> Items | None:
    try:
        return Items.load(path)
    except (FileNotFoundError, ValueError, OSError):
        return None  # moved or deleted run folder: compare by interval overlap instead


def items(row: dict, name: str) -> Items | None:
    path = ((row.get("artifacts") or {}).get("items") or {}).get(name)
    return _load_items(str(path)) if path else None


# --- points at matched sparsity ------------------------------------------------------------------
@dataclass
class Point:
    label: str
    level: float
    sparsity: float                  # the achieved sparsity (at, nearest) or the level (interp)
    how: str                         # "at" | "interp" | "nearest"
    parts: list[tuple[dict, float]]  # rows and their interpolation weights

    def estimate(self, name: str, task: str | None = None) -> Estimate | None:
        ests = [estimate(r, name, task) for r, _ in self.parts]
        if any(e is None for e in ests):
            return None
        value = sum(w * e.value for e, (_, w) in zip(ests, self.parts))
        if any(e.lo is None for e in ests):
            return Estimate(value)
        # interpolating the endpoints is conservative: the interval of a weighted mean of two
        # independent estimates is narrower than the weighted mean of their intervals
        return Estimate(value, sum(w * e.lo for e, (_, w) in zip(ests, self.parts)),
                        sum(w * e.hi for e, (_, w) in zip(ests, self.parts)))


def achieved(rows: list[dict]) -> dict[str, list[dict]]:
    """Per label, its pruned rows by achieved sparsity (one row per distinct sparsity)."""
    out: dict[str, dict[float, dict]] = {}
    for r in rows:
        if r["sparsity"] > 0:
            out.setdefault(r["label"], {}).setdefault(round(r["sparsity"], 6), r)
    return {label: [pts[s] for s in sorted(pts)] for label, pts in out.items()}


def matched(rows: list[dict], levels=LEVELS) -> list[Point]:
    points = []
    for label, pts in achieved(rows).items():
        xs = [r["sparsity"] for r in pts]
        for level in levels:
            near = min(range(len(pts)), key=lambda i: abs(xs[i] - level))
            if abs(xs[near] - level) <= AT:
                points.append(Point(label, level, xs[near], "at", [(pts[near], 1.0)]))
            elif xs[0] < level < xs[-1]:
                j = next(i for i in range(1, len(xs)) if xs[i] > level)
                w = (level - xs[j - 1]) / (xs[j] - xs[j - 1])
                points.append(Point(label, level, level, "interp", [(pts[j - 1], 1 - w), (pts[j], w)]))
            else:
                points.append(Point(label, level, xs[near], "nearest", [(pts[near], 1.0)]))
    return points


# --- differences --------------------------------------------------------------------------------
@dataclass
class Difference:
    a: str
    b: str
    level: float
    metric: str
    value: float
    interval: Interval | None        # paired only
    paired: bool
    beyond_noise: bool | None        # None: neither a paired interval nor both marginal ones
    matched: bool = True             # False: a side is a nearest achieved point at another sparsity

    def winner(self) -> str | None:
        if not self.beyond_noise:
            return None
        better_a = (self.value < 0) if self.metric in LOWER_IS_BETTER else (self.value > 0)
        return self.a if better_a else self.b


def _paired_parts(a: Point, b: Point, name: str):
    """Both sides' per-image scores on the same items, or None. Rows scored on nested shares of one
    prompt set (adaptive rows that stopped at different rounds) pair on the smaller share's items."""
    parts = [(items(r, name), w) for r, w in a.parts], [(items(r, name), w) for r, w in b.parts]
    flat = [it for side in parts for it, _ in side]
    if any(it is None for it in flat) or any(it.kind != flat[0].kind for it in flat):
        return None
    keys = min((it.keys for it in flat), key=len)
    if all(np.array_equal(it.keys, keys) for it in flat):
        return parts
    if any(not np.isin(keys, it.keys).all() for it in flat):
        return None  # other prompts or seeds: not the same items
    return tuple([(_restricted(it, keys), w) for it, w in side] for side in parts)


def _restricted(it: Items, keys: np.ndarray) -> Items:
    """The items of `keys`, in that order."""
    where = {k: i for i, k in enumerate(it.keys)}
    rows = np.array([where[k] for k in keys])
    return Items(it.kind, it.keys[rows], it.values[rows], it.clusters[rows],
                 None if it.strata is None else it.strata[rows], it.reference)


def difference(a: Point, b: Point, name: str, resamples: int | None = None, seed: int = 0,
               level: float = LEVEL) -> Difference | None:
    ea, eb = a.estimate(name), b.estimate(name)
    if ea is None or eb is None:
        return None
    same = (a.how != "nearest" and b.how != "nearest") or abs(a.sparsity - b.sparsity) <= AT
    parts = _paired_parts(a, b, name)
    if parts is not None:
        pa, pb = parts
        first = pa[0][0]
        if first.kind == "mean":
            va, vb = (sum(w * it.values for it, w in side) for side in (pa, pb))
            ci = paired_difference(va, vb, first.clusters, first.strata, resamples or 2000, seed, level)
        else:  # FID: resample the same images on both sides, recompute each FID
            ci = paired_statistic(np.hstack([it.values for it, _ in pa]), np.hstack([it.values for it, _ in pb]),
                                  _fid_of(pa), resamples or 300, seed, level, statistic_b=_fid_of(pb))
        return Difference(a.label, b.label, a.level, name, ci.value, ci, True, ci.excludes(0), same)
    beyond = None if ea.lo is None or eb.lo is None else (ea.lo > eb.hi or eb.lo > ea.hi)
    return Difference(a.label, b.label, a.level, name, ea.value - eb.value, None, False, beyond, same)


def _fid_of(side):
    """statistic over hstacked features: the weighted FIDs of the side's parts, each on its columns."""
    dims = np.cumsum([0] + [it.values.shape[1] for it, _ in side])

    def stat(rows):
        return sum(w * it.statistic(rows[:, dims[i]:dims[i + 1]]) for i, (it, w) in enumerate(side))
    return stat
