"""D(plan) = err(f_dense(C), f_plan(C)) + err(f_dense(null), f_plan(null)), f = proj(E(c)).

`Discrepancy.evaluate(parent, variants)` scores many small changes of one schedule at once.
With `fast=True` it runs the parent once per batch, keeps its hidden states at the positions
where variants start to differ (within a memory budget), and runs each variant only from
there: the prefix is identical, so the result is bit-identical to a full forward.
"""
from __future__ import annotations

import torch

from skrr.calibration import Calibration
from skrr.encoder import find_sub_block_encoder, to_sub_blocks

METRICS = ("mse", "cosine")


class Discrepancy:
    def __init__(self, text_side, calib: Calibration, metric: str = "mse", projection: bool = True,
                 null_term: bool = True, batch_size: int = 8, device="cpu", fast: bool = True,
                 cache_budget_mb: float = 2048):
        if metric not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
        self.enc = find_sub_block_encoder(text_side.encoder) or to_sub_blocks(text_side.encoder)
        self.n = len(self.enc)
        self.text_side, self.metric, self.projection = text_side, metric, projection
        self.null_term, self.device, self.fast = null_term, device, fast
        self.budget = cache_budget_mb * 2**20
        self.sub_block_evals = 0  # sub-block forward calls x prompts, for benchmarks
        self.batches = self._batches(calib.tokens, calib.target, batch_size, "C")
        if null_term:
            self.batches += self._batches(calib.null_tokens, calib.null_target, 1, "null")

    @staticmethod
    def _batches(tokens, target, batch_size, group):
        out = []
        for s in range(0, tokens["input_ids"].shape[0], batch_size):
            sl = slice(s, s + batch_size)
            mask = tokens["attention_mask"]
            out.append({"group": group, "input_ids": tokens["input_ids"][sl], "target": target[sl],
                        "attention_mask": None if mask is None else mask[sl], "attend": tokens["attend"][sl]})
        return out

    # ------------------------------------------------------------------------------------
    def __call__(self, schedule) -> float:
        return self.evaluate(list(schedule), [{}])[0]

    @torch.no_grad()
    def evaluate(self, parent: list, variants: list[dict], groups_limit: int | None = None) -> list[float]:
        """D for each variant (a dict position -> source index or None) of the parent schedule.
        `groups_limit` evaluates on the first that many prompt batches only (successive halving)."""
        sums = {g: torch.zeros(len(variants), dtype=torch.float64) for g in ("C", "null")}
        counts = {"C": 0.0, "null": 0.0}
        c_batches = [b for b in self.batches if b["group"] == "C"]
        batches = (c_batches[:groups_limit] if groups_limit else c_batches) + [b for b in self.batches if b["group"] == "null"]
        for b in batches:
            errs, count = self._batch_errors(b, parent, variants)
            sums[b["group"]] += errs
            counts[b["group"]] += count
        d = sums["C"] / counts["C"]
        if self.null_term:
            d = d + sums["null"] / counts["null"]
        return d.tolist()

    def _batch_errors(self, b, parent, variants):
        dev = self.device
        ids = b["input_ids"].to(dev)
        mask = None if b["attention_mask"] is None else b["attention_mask"].to(dev)
        h0, ctx = self.enc.prepare(input_ids=ids, attention_mask=mask)
        starts = [min(v) if v else self.n for v in variants]
        states = self._parent_states(h0, ctx, parent, starts) if self.fast else {0: h0}
        rows = ids.shape[0]
        target, attend = b["target"].to(dev), b["attend"].to(dev)
        errs = torch.zeros(len(variants), dtype=torch.float64)
        for j, (v, p) in enumerate(zip(variants, starts)):
            q = max(s for s in states if s <= p)
            h = self._run(states[q], ctx, q, p, parent, rows)
            sched = list(parent)
            for pos, src in v.items():
                sched[pos] = src
            h = self._run(h, ctx, p, self.n, sched, rows)
            errs[j] = self._error(self._features(h, ctx), target, attend)
        return errs, self._count(target, attend)

    def _run(self, h, ctx, start, stop, schedule, rows):
        self.sub_block_evals += rows * sum(s is not None for s in schedule[start:stop])
        return self.enc.run(h, ctx, start, stop, schedule)

    def _parent_states(self, h0, ctx, parent, starts):
        """Hidden states of the parent before the positions where variants start, as many as fit."""
        wanted = sorted(set(s for s in starts if s > 0))
        fit = max(0, int(self.budget // max(1, h0.numel() * h0.element_size())) - 1)
        if len(wanted) > fit:  # keep an evenly spaced subset; the rest recompute from the one below
            wanted = [wanted[round(i * (len(wanted) - 1) / max(1, fit - 1))] for i in range(fit)] if fit else []
        states, h, pos = {0: h0}, h0, 0
        for w in sorted(set(wanted)):
            h = self._run(h, ctx, pos, w, parent, h0.shape[0])
            states[w], pos = h, w
        return states

    def _features(self, h, ctx):
        f = self.enc.finish(h, ctx)
        if self.projection:
            proj = self.text_side.projection
            f = proj(f.to(next(proj.parameters()).dtype))
        return f.float()

    def _error(self, f, target, attend) -> float:
        m = attend.unsqueeze(-1).float()
        if self.metric == "mse":
            return float((((f - target) ** 2) * m).sum(dtype=torch.float64))
        cos = torch.nn.functional.cosine_similarity(f, target, dim=-1)
        return float(((1 - cos) * attend.float()).sum(dtype=torch.float64))

    def _count(self, target, attend) -> float:
        tokens = float(attend.sum())
        return tokens * target.shape[-1] if self.metric == "mse" else tokens
