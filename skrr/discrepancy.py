"""D(plan) = err(f_dense(C), f_plan(C)) + err(f_dense(null), f_plan(null)), f = proj(E(c)).

`Discrepancy.evaluate(parent, variants)` scores many small changes of one schedule at once.
With `fast=True` (see `_fast_finals`) hidden states are cached by schedule prefix within a
memory budget, each variant runs only from the deepest cached prefix of its own schedule
(its parent's, or a sibling's that shares it), and variants advance together
along the batch dimension: the numbers are bit-identical to a full forward per variant
(`fast=False`), which the tests check.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from skrr.calibration import Calibration, token_batches
from skrr.encoder import find_sub_block_encoder, to_sub_blocks

METRICS = ("mse", "cosine")


def _apply(parent: list, variant: dict) -> list:
    sched = list(parent)
    for pos, src in variant.items():
        sched[pos] = src
    return sched


def _repeat_ctx(ctx: dict, rows: int, times: int) -> dict:
    """ctx for `times` copies of a batch stacked along dim 0 (per-row masks repeated)."""
    if times == 1:
        return ctx
    rep = lambda x: x.repeat(times, *[1] * (x.dim() - 1)) if torch.is_tensor(x) and x.shape[0] == rows else x  # noqa: E731
    return {k: ({kk: rep(vv) for kk, vv in v.items()} if isinstance(v, dict) else rep(v)) for k, v in ctx.items()}


class Discrepancy:
    wave_rows = 256  # at most this many prompt rows (variants x batch) advance in one call
    keep_best = 4  # after a call, keep the cached states of this many best variants (the next parents)
    reuse_siblings = True  # also keep all variants' states: a later candidate continues a sibling's run

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
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()  # (batch, schedule prefix) -> state
        self._cache_bytes, self._stamp = 0, None
        self._used: dict[tuple, int] = {}  # key -> last call that touched it
        self._calls = 0
        self.sub_block_evals = 0  # sub-block forward calls x prompts, for benchmarks
        self.batches = self._batches(calib.tokens, calib.target, batch_size, "C")
        if null_term:
            self.batches += self._batches(calib.null_tokens, calib.null_target, 1, "null")

    @staticmethod
    def _batches(tokens, target, batch_size, group):
        return [{"group": group, "target": target[s:s + batch_size], **b}
                for s, b in zip(range(0, len(target), batch_size), token_batches(tokens, batch_size))]

    # ------------------------------------------------------------------------------------
    def __call__(self, schedule) -> float:
        return self.evaluate(list(schedule), [{}])[0]

    @torch.no_grad()
    def evaluate(self, parent: list, variants: list[dict], groups_limit: int | None = None) -> list[float]:
        """D for each variant (a dict position -> source index or None) of the parent schedule.
        `groups_limit` evaluates on the first that many prompt batches only (successive halving)."""
        sums = {g: torch.zeros(len(variants), dtype=torch.float64) for g in ("C", "null")}
        counts = {"C": 0.0, "null": 0.0}
        c_batches = [(bi, b) for bi, b in enumerate(self.batches) if b["group"] == "C"]
        null_batches = [(bi, b) for bi, b in enumerate(self.batches) if b["group"] == "null"]
        batches = (c_batches[:groups_limit] if groups_limit else c_batches) + null_batches
        if self.fast:
            self._check_cache()
            self._fresh = {}  # variant -> cache keys its own run added
            self._calls += 1
            self._forget_stale()
        for bi, b in batches:
            errs, count = self._batch_errors(bi, b, parent, variants)
            sums[b["group"]] += errs
            counts[b["group"]] += count
        d = sums["C"] / counts["C"]
        if self.null_term:
            d = d + sums["null"] / counts["null"]
        if self.fast:
            self._forget_all_but_best(d)
        return d.tolist()

    def _forget_all_but_best(self, d):
        """Only a candidate that becomes a beam is a parent later: drop the other variants' states."""
        if len(d) <= self.keep_best or self.reuse_siblings:
            return
        bar = d.sort().values[self.keep_best - 1]
        for j, keys in self._fresh.items():
            if d[j] > bar:
                for key in keys:
                    self._drop(key)

    def _batch_errors(self, bi, b, parent, variants):
        dev = self.device
        ids = b["input_ids"].to(dev)
        mask = None if b["attention_mask"] is None else b["attention_mask"].to(dev)
        h0, ctx = self.enc.prepare(input_ids=ids, attention_mask=mask)
        rows = ids.shape[0]
        target, attend = b["target"].to(dev), b["attend"].to(dev)
        scheds = [_apply(parent, v) for v in variants]
        if self.fast:
            finals = self._fast_finals(bi, h0, ctx, parent, variants, scheds, rows)
        else:  # straightforward: a full forward per variant
            finals = [self._run(h0, ctx, 0, self.n, sched, rows) for sched in scheds]
        errs = torch.zeros(len(variants), dtype=torch.float64)
        for j, h in enumerate(finals):
            errs[j] = self._error(self._features(h, ctx), target, attend)
        return errs, self._count(target, attend)

    def _run(self, h, ctx, start, stop, schedule, rows):
        self.sub_block_evals += rows * sum(s is not None for s in schedule[start:stop])
        return self.enc.run(h, ctx, start, stop, schedule)

    # --- fast path -----------------------------------------------------------------------
    # Hidden states are cached across calls, keyed by (batch, schedule prefix): the state before
    # position p depends only on schedule[:p]. A beam at depth t+1 was a candidate at depth t, so
    # its states are already there; and candidate S+{i,j} (j < i) continues the run of its
    # sibling S+{j} from position i. Variants then advance together, stacked along the batch
    # dimension (one call per sub-block, not one per variant); rows never mix, so every number is
    # the one a full forward gives.
    def _fast_finals(self, bi, h0, ctx, parent, variants, scheds, rows):
        starts = [min(v) if v else self.n for v in variants]
        before = {}  # (join position, variant or None) -> state
        for j, p in enumerate(starts):
            q = self._deepest_cached(bi, scheds[j], p)  # e.g. a sibling already ran the same prefix
            if q is not None:
                starts[j], before[(q, j)] = q, self._get((bi, tuple(scheds[j][:q])))
        for p in sorted(set(p for j, p in enumerate(starts) if (p, j) not in before)):
            before[(p, None)] = self._state(bi, h0, ctx, parent, p, rows)
        finals = [None] * len(variants)
        order = sorted(range(len(variants)), key=lambda j: starts[j])
        width = max(1, self.wave_rows // rows)
        for c in range(0, len(order), width):
            chunk = order[c:c + width]
            for j, h in zip(chunk, self._wave(bi, ctx, chunk, starts, scheds, before, rows)):
                finals[j] = h
        return finals

    def _wave(self, bi, ctx, members_in, starts, scheds, before, rows):
        """Final states of the variants `members_in`, advanced position by position as one batch."""
        members, parts = [], []  # parts: one state per member, in member order
        for t in range(min(starts[j] for j in members_in), self.n + 1):
            if members and t < self.n:
                parts = self._step(parts, [scheds[j][t] for j in members], ctx, rows)
            joining = [j for j in members_in if starts[j] == t]
            for j in joining:  # a variant joins at its first change, from the parent's state there
                h = before[(t, j)] if (t, j) in before else before[(t, None)]
                if t < self.n and scheds[j][t] is not None:
                    h = self._run(h, ctx, t, t + 1, scheds[j], rows)
                members.append(j)
                parts.append(h)
            if t < self.n:
                for j, h in zip(members, parts):
                    key = (bi, tuple(scheds[j][:t + 1]))
                    if self._put(key, h):
                        self._fresh.setdefault(j, []).append(key)
        by_member = dict(zip(members, parts))
        return [by_member[j] for j in members_in]

    def _step(self, parts, srcs, ctx, rows):
        """Run position t's source for every member; members with the same source share one call."""
        out = list(parts)
        for src in dict.fromkeys(srcs):
            if src is None:
                continue
            idx = [r for r, s in enumerate(srcs) if s == src]
            h = torch.cat([parts[r] for r in idx]) if len(idx) > 1 else parts[idx[0]]
            self.sub_block_evals += rows * len(idx)
            h = self.enc.branches[str(src)](h, _repeat_ctx(ctx, rows, len(idx)))
            for r, piece in zip(idx, h.split(rows)):
                out[r] = piece
        return out

    def _state(self, bi, h0, ctx, schedule, p, rows):
        """The state before position p of `schedule`, from the nearest cached prefix."""
        q, h = 0, h0
        for k in range(p, 0, -1):
            found = self._get((bi, tuple(schedule[:k])))
            if found is not None:
                q, h = k, found
                break
        for pos in range(q, p):
            h = self._run(h, ctx, pos, pos + 1, schedule, rows)
            self._put((bi, tuple(schedule[:pos + 1])), h)
        return h

    def _deepest_cached(self, bi, schedule, p):
        """The largest q > p whose state under `schedule` is cached (None if none)."""
        if not self.reuse_siblings:
            return None
        for q in range(self.n, p, -1):
            if (bi, tuple(schedule[:q])) in self._cache:
                return q
        return None

    def _get(self, key):
        h = self._cache.get(key)
        if h is not None:
            self._cache.move_to_end(key)
            self._used[key] = self._calls
        return h

    def _drop(self, key):
        old = self._cache.pop(key, None)
        self._used.pop(key, None)
        if old is not None:
            self._cache_bytes -= old.numel() * old.element_size()

    def _forget_stale(self):
        """A search asks for a state within a few calls of storing it (the parents of one depth are
        the best children of the previous one): drop states untouched for longer."""
        if self.reuse_siblings:
            return  # the budget alone bounds the cache
        horizon = self._calls - 4 * (self.keep_best + 1)
        while self._cache and self._used.get(next(iter(self._cache)), 0) < horizon:
            self._drop(next(iter(self._cache)))

    def _put(self, key, h) -> bool:
        """Cache a state; True if it was not there before."""
        if key in self._cache:
            self._cache.move_to_end(key)
            self._used[key] = self._calls
            return False
        size = h.numel() * h.element_size()
        if size > self.budget:
            return False
        self._cache[key] = h.clone() if h._base is not None else h  # a view would pin its whole batch
        self._cache_bytes += size
        self._used[key] = self._calls
        while self._cache_bytes > self.budget:
            self._drop(next(iter(self._cache)))
        return True

    def reset_cache(self):
        """Forget cached hidden states. Needed only after editing weights through `.data`, which
        in-place version counters do not see (a merge done with `param.copy_` is detected)."""
        self._stamp = None

    def _check_cache(self):
        """Drop cached states when weights changed in place or the encoder was restructured."""
        mods = [self.enc, self.text_side.projection]
        stamp = (tuple(self.enc.branches.keys()),
                 tuple((id(p), p.data_ptr(), p._version) for m in mods for p in m.parameters()))
        if stamp != self._stamp:
            self._cache.clear()
            self._used.clear()
            self._cache_bytes, self._stamp = 0, stamp

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
