"""ShortGPT (arXiv 2403.03853) on a text encoder: Block Influence, one-shot block removal.

`bi: raw` (the default, documented in docs/method.md): BI_b = 1 - mean over attended tokens of
cos(x_in, x_out), where x_in is the raw input of block b (before sub-block 2b) and x_out its raw
output (after sub-block 2b+1), computed in fp32 on the calibration prompts.
`bi: reference`: as ShortGPT's own code (`compute_bi` over `output_hidden_states`): every position,
padding included, summed, and the last block's output taken after the final norm.
The lowest-BI whole blocks are removed until each sparsity target is met. This module holds the
settings (checked without torch); the computation is skrr.baselines.influence.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from skrr.methods import Measured
from skrr.plan import Plan

BI = ("raw", "reference")


@dataclass(kw_only=True)
class ShortGPT(Measured):
    """Remove the whole blocks of lowest Block Influence, in one shot. D's settings (`metric`,
    `projection`, `null_term`) serve only the optional Re-use phase and the calibration targets."""
    reuse: bool  # apply Skrr's Re-use phase to the skipped positions
    bi: str = "raw"  # raw: block input/output, attended tokens | reference: ShortGPT's code (padding, final norm)

    CHOICES: ClassVar[dict[str, tuple]] = {**Measured.CHOICES, "bi": BI}
    ADDED: ClassVar[dict] = {"bi": "raw"}  # plans and cache keys made before `bi` existed keep theirs

    def run(self, ctx, targets: list[float]) -> list[Plan]:
        from skrr.baselines.influence import remove_least_influential  # torch: loaded when the run starts

        return remove_least_influential(self, ctx, targets)
