"""D, the quantity Skrr's search minimises (the reference: a full forward per schedule).

    D(schedule) = err(f_dense(C), f_plan(C)) + err(f_dense(null), f_plan(null)),   f = proj(E(c))

err is the MSE over every element of the tokens the denoiser attends to (padding excluded where
the pipeline passes a mask), or 1 - cosine per token (`metric: cosine`). `projection: false`
compares E(c) itself; `null_term: false` drops the empty-prompt term. A schedule lists, per
position, the sub-block run there (None: skipped). `skrr.search.prefix_cache.PrefixCachedDiscrepancy`
computes the same numbers, bit for bit, with far fewer sub-block evaluations.
"""
from __future__ import annotations

import time

import torch

from skrr.config.choices import METRICS
from skrr.errors import InputError
from skrr.search import distributed
from skrr.search.calibration import Calibration, encoder_batches
from skrr.search.compute import TOLERANCE, Forward
from skrr.search.finite import check_finite

D_LIKELY = ("method.compute_dtype (float16/bfloat16 overflow: try float32), NaN/inf in the encoder's weights, "
            "or no calibration tokens (method.batch_size, calibration.size)")


def apply_variant(parent: list, variant: dict) -> list:
    """The schedule `parent` with the positions in `variant` (position -> source or None) replaced."""
    sched = list(parent)
    for pos, src in variant.items():
        sched[pos] = src
    return sched


class Discrepancy:
    """D on calibration data. `evaluate(parent, variants)` scores small changes of one schedule
    (what a search asks for); `disc(schedule)` scores one schedule."""

    def __init__(self, text_side, calib: Calibration, metric: str = "mse", projection: bool = True,
                 null_term: bool = True, device="cpu"):
        if metric not in METRICS:
            raise InputError(f"unknown metric {metric!r}; choose from {METRICS}")
        # in the dtype the targets were computed in (the calibration's), so D(dense) is exactly 0
        self.forward = Forward(text_side, projection, calib.compute_dtype)
        self.enc, self.n = self.forward.enc, len(self.forward.enc)
        self.text_side, self.metric, self.projection = text_side, metric, projection
        self.null_term, self.device = null_term, device
        self.sub_block_evals = 0  # sub-block forward calls x prompts (this rank's), for benchmarks
        # the very batches the dense targets were computed in (padding cut where a mask allows);
        # under torchrun/srun this rank computes only its own (`self.mine`) and holds only their targets
        self.batches = [dict(b, group="C") for b in encoder_batches(calib.tokens, calib.batch_size, calib.length_buckets)]
        if null_term:
            self.batches += [dict(b, group="null") for b in encoder_batches(calib.null_tokens, 1, calib.length_buckets)]
        self.mine = distributed.mine(len(self.batches))
        targets = {"C": calib.target, "null": calib.null_target}
        for bi, b in enumerate(self.batches):
            b["count"] = self._count(calib.target.shape[-1], b["attend"])  # the batch's share of D's denominator
            b["target"] = targets[b["group"]][b["rows"], :b["input_ids"].shape[1]] if bi in self.mine else None
        self.tokens = sum(b["input_ids"].numel() for b in self.batches)  # fed per full pass
        self._my_tokens = sum(self.batches[bi]["input_ids"].numel() for bi in self.mine)
        self._tick = self._share = None

    @property
    def tolerance(self) -> float:
        """Relative gap within which two correct evaluations of D may differ (skrr.search.compute.TOLERANCE)."""
        return TOLERANCE.get(self.forward.dtype, TOLERANCE[torch.float32])

    def __call__(self, schedule) -> float:
        return self.evaluate(list(schedule), [{}])[0]

    @torch.no_grad()
    def evaluate(self, parent: list, variants: list[dict], tick=None) -> list[float]:
        """D of each variant (a dict position -> source index or None) of the parent schedule.
        `tick(k)` reports progress as it goes: k variants' worth of work done (fractions too)."""
        self._tick = tick or (lambda k: None)
        errors = torch.zeros(len(self.batches), len(variants), dtype=torch.float64)  # per batch, per variant
        schedules = [apply_variant(parent, v) for v in variants]
        for bi in self.mine:
            b, dev = self.batches[bi], self.device
            mask = None if b["attention_mask"] is None else b["attention_mask"].to(dev)
            h0, ctx = self.forward.prepare(b["input_ids"].to(dev), mask)
            self._share = b["input_ids"].numel() / self._my_tokens  # of one variant's work
            target, attend = b["target"].to(dev), b["attend"].to(dev)
            for j, h in enumerate(self._final_states(bi, h0, ctx, parent, variants, schedules)):
                errors[bi, j] = self._error(self.forward.features(h, ctx), target, attend)
        d = self._combine(distributed.gather_batches(errors))
        return check_finite(d, "the search's discrepancy D", D_LIKELY).tolist()

    def _combine(self, errors: torch.Tensor) -> torch.Tensor:
        """D per variant from the per-batch error sums, added in batch order in float64: the same
        numbers whichever rank computed which batch."""
        sums = {g: torch.zeros(errors.shape[1], dtype=torch.float64) for g in ("C", "null")}
        counts = {"C": 0.0, "null": 0.0}
        for b, row in zip(self.batches, errors):
            sums[b["group"]] += row
            counts[b["group"]] += b["count"]
        d = sums["C"] / counts["C"]
        if self.null_term:
            d = d + sums["null"] / counts["null"]
        return d

    def _final_states(self, bi, h0, ctx, parent, variants, schedules) -> list[torch.Tensor]:
        """The last hidden state of batch `bi` under each schedule: a full forward each."""
        finals = []
        for s in schedules:
            finals.append(self._run(h0, ctx, 0, self.n, s))
            self._tick(self._share)
        return finals

    @torch.no_grad()
    def throughput(self) -> float:
        """Sub-block evaluations x tokens per second: a dense forward of the first batch, timed."""
        b = self.batches[self.mine[0] if self.mine else 0]
        mask = None if b["attention_mask"] is None else b["attention_mask"].to(self.device)
        t0 = time.perf_counter()
        h, ctx = self.forward.prepare(b["input_ids"].to(self.device), mask)
        self.forward.run(h, ctx, list(range(self.n)))
        if str(self.device).startswith("cuda"):
            torch.cuda.synchronize()
        return b["input_ids"].numel() * self.n / max(time.perf_counter() - t0, 1e-9)

    def _run(self, h, ctx, start, stop, schedule):
        self.sub_block_evals += h.shape[0] * sum(s is not None for s in schedule[start:stop])
        return self.forward.run(h, ctx, schedule, start, stop)

    def _error(self, f, target, attend) -> float:
        m = attend.unsqueeze(-1).float()
        if self.metric == "mse":
            return float((((f - target) ** 2) * m).sum(dtype=torch.float64))
        cos = torch.nn.functional.cosine_similarity(f, target, dim=-1)
        return float(((1 - cos) * attend.float()).sum(dtype=torch.float64))

    def _count(self, features: int, attend) -> float:
        tokens = float(attend.sum())
        return tokens * features if self.metric == "mse" else tokens
