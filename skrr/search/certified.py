"""`method.compute_dtype=certified`: float32's decisions at close to bf16's cost.

Every candidate is scored in bf16 (8x cheaper on a GPU's tensor cores; an estimate, see
skrr.search.compute.ASSUMED_TFLOPS); only those whose bf16 D lies within a band (relative) of the
decision's pivot (the k-th kept beam, or Re-use's best option) are scored again in float32, and the
decision is taken on the float32 values. A candidate outside the band is worse than the pivot in
float32 too as long as bf16 and float32 D differ by less than half the band. That is checked on the
candidates themselves: the band starts at `BAND` and doubles until every candidate scored in both
dtypes differs by less than half of it (bf16's error is not bounded a priori: on a trained testbed a
small-D candidate was 7% off). So the kept set, its D and every Re-use choice are those of a float32
search (D within float32's tolerance: the exact evaluator sees other batch shapes).
benchmarks/certified.py measures the re-scored fraction and checks float32's choice never fell outside.
"""
from __future__ import annotations

import dataclasses

import torch

from skrr.search.compute import TOLERANCE

# the first band: bf16's tolerance on each side of a comparison (widened where the candidates show more)
BAND = 2 * TOLERANCE[torch.bfloat16]


class Certified:
    """A D evaluator pair: `exact` (float32, what the plan records) and `cheap` (bf16, the same
    calibration targets and batches). Calls without a decision to certify go to `exact`."""

    def __init__(self, make, calib):
        """`make(calib)` builds an evaluator (Discrepancy or PrefixCachedDiscrepancy) on `calib`."""
        self.exact = make(calib)
        self.cheap = make(dataclasses.replace(calib, compute_dtype=torch.bfloat16))
        self.scored = self.rescored = self.widened = 0

    def __call__(self, schedule) -> float:
        return self.exact(schedule)

    def evaluate(self, parent, variants, tick=None) -> list[float]:
        return self.exact.evaluate(parent, variants, tick)

    def __getattr__(self, name):  # tolerance, tokens, forward, sub_block_evals, throughput: the exact one's
        return getattr(self.exact, name)

    def decide(self, rough: list[float], rank: int, rescore) -> list[float]:
        """`certify` on this evaluator's candidates, counted for the plan's record."""
        out, rescored, widened = certify(rough, rank, rescore)
        self.scored, self.rescored, self.widened = self.scored + len(rough), self.rescored + rescored, \
            self.widened + widened
        return out


def certify(rough: list[float], rank: int, rescore) -> tuple[list[float], int, int]:
    """(`rough`, bf16 D of each candidate, with those near the `rank`-th smallest replaced by their
    float32 D from `rescore(indices)`; how many were re-scored; how often the band widened). The
    band doubles until it holds the bf16-vs-float32 deviations it sees."""
    pivot = sorted(rough)[min(rank, len(rough)) - 1]
    out, done, width, widened = list(rough), set(), BAND, 0
    while True:
        close = [i for i, d in enumerate(rough) if d <= pivot + width * abs(pivot) and i not in done]
        for i, d in zip(close, rescore(close) if close else []):
            out[i] = d
        done.update(close)
        worst = max((abs(rough[i] - out[i]) / max(abs(out[i]), 1e-30) for i in done), default=0.0)
        if worst < width / 2 or len(done) == len(rough):
            return out, len(done), widened
        width *= 2
        widened += 1
