"""LaCo (arXiv 2402.11187) on a text encoder: layer collapse with a similarity gate.

    l = H - C
    while l >= L:
        merge layers l..l+C-1 of the current model into l (RDSC: theta_l + sum_k (theta_{l+k} - theta_l))
        s = mean over prompts of cos(flat E_dense(c), flat E_merged(c))
        if s > T: accept; l = min(l - I, depth - C)    else: l = l - 1
    (stops once the largest sparsity target is met)

Layer norms are not merged (the target layer keeps its own); T5's relative position bias table
lives outside the blocks. `merge: last` is what the public reference code does in effect (its
in-place update makes the merge equal to the last layer of the run). Where both differ from LaCo's
notebook: docs/method.md. This module holds the settings (checked without torch); the collapse
itself is skrr.baselines.collapse.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from skrr.config.ranges import AT_LEAST_ONE, Range
from skrr.methods import Measured
from skrr.plan import Plan

MERGES = ("rdsc", "last")


@dataclass(kw_only=True)
class LaCo(Measured):
    """Collapse layers by merging runs of C blocks (RDSC), accepting a merge when the merged model's
    output stays cosine-similar (> T) to the dense one. D's settings serve only the optional Re-use."""
    merge: str  # rdsc: theta_l + sum_k (theta_{l+k} - theta_l) | last: keep the run's last layer
    C: int  # layers per merge (M)
    L: int  # lowest layer a merge may target
    H: int  # merges start at H - C (clipped to the number of blocks)
    I: int  # interval after an accepted merge
    T: float  # accept a merge when the mean cosine similarity exceeds T
    num_sim_prompts: int  # calibration prompts used for the similarity
    reuse: bool  # apply Skrr's Re-use phase afterwards (with the merged weights)

    RANGES: ClassVar[dict[str, Range]] = {**Measured.RANGES, "C": Range(2, whole=True), "L": Range(0, whole=True),
                                          "H": AT_LEAST_ONE, "I": AT_LEAST_ONE, "T": Range(-1, 1),
                                          "num_sim_prompts": AT_LEAST_ONE}
    CHOICES: ClassVar[dict[str, tuple]] = {**Measured.CHOICES, "merge": MERGES}

    def run(self, ctx, targets: list[float]) -> list[Plan]:
        from skrr.baselines.collapse import collapse  # torch: loaded when the run starts, not when settings are checked

        return collapse(self, ctx, targets)
