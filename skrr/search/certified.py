"""`method.compute_dtype=certified`: float32's decisions at close to bf16's cost.

Every candidate is scored in bf16 (8x cheaper on a GPU's tensor cores; an estimate, see
skrr.search.compute.ASSUMED_TFLOPS); only those whose bf16 D lies within `BAND` (relative) of the
decision's pivot (the k-th kept beam, or Re-use's best option) are scored again in float32, and the
decision is taken on the float32 values. A candidate outside the band is worse than the pivot in
float32 too as long as bf16 and float32 D differ by less than half the band, so the kept set, its D
and every Re-use choice are those of a float32 search (D within float32's tolerance: the exact
evaluator sees other batch shapes). benchmarks/certified.py measures the band's size and checks
float32's choice never fell outside it.
"""
from __future__ import annotations

import dataclasses

import torch

from skrr.search.compute import TOLERANCE

# bf16 and float32 D of one candidate differ by at most bf16's tolerance, each side of a comparison
BAND = 2 * TOLERANCE[torch.bfloat16]


class Certified:
    """A D evaluator pair: `exact` (float32, what the plan records) and `cheap` (bf16, the same
    calibration targets and batches). Calls without a decision to certify go to `exact`."""

    def __init__(self, make, calib):
        """`make(calib)` builds an evaluator (Discrepancy or PrefixCachedDiscrepancy) on `calib`."""
        self.exact = make(calib)
        self.cheap = make(dataclasses.replace(calib, compute_dtype=torch.bfloat16))
        self.scored = self.rescored = 0

    def __call__(self, schedule) -> float:
        return self.exact(schedule)

    def evaluate(self, parent, variants, tick=None) -> list[float]:
        return self.exact.evaluate(parent, variants, tick)

    def __getattr__(self, name):  # tolerance, tokens, forward, sub_block_evals, throughput: the exact one's
        return getattr(self.exact, name)

    def band(self, rough: list[float], rank: int) -> list[int]:
        """Indices of the candidates to score again: bf16 D within BAND of the rank-th smallest."""
        pivot = sorted(rough)[min(rank, len(rough)) - 1]
        limit = pivot + BAND * abs(pivot)
        chosen = [i for i, d in enumerate(rough) if d <= limit]
        self.scored += len(rough)
        self.rescored += len(chosen)
        return chosen
