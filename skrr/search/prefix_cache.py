"""`PrefixCachedDiscrepancy`: the reference D, bit for bit, with far fewer sub-block evaluations.

The hidden state before position p depends only on schedule[:p], so states are cached under
(batch, schedule prefix) within a memory budget (LRU). A beam at depth t+1 was a candidate at
depth t, so its states are already there; a candidate S+{i,j} (j < i) continues the run of its
sibling S+{j} from position i. Each variant runs only from the deepest cached prefix of its own
schedule, and variants advance together, stacked along the batch dimension (one call per
sub-block and position, not one per variant). Rows never mix, so every number is the one a
full forward gives; `tests/test_skrr.py` checks this against `Discrepancy`.
"""
from __future__ import annotations

from collections import OrderedDict

import torch

from skrr.search.discrepancy import Discrepancy


def _repeat_ctx(ctx: dict, rows: int, times: int) -> dict:
    """ctx for `times` copies of a batch stacked along dim 0 (per-row masks repeated)."""
    if times == 1:
        return ctx
    rep = lambda x: x.repeat(times, *[1] * (x.dim() - 1)) if torch.is_tensor(x) and x.shape[0] == rows else x  # noqa: E731
    return {k: ({kk: rep(vv) for kk, vv in v.items()} if isinstance(v, dict) else rep(v)) for k, v in ctx.items()}


class PrefixCachedDiscrepancy(Discrepancy):
    wave_rows = 256  # at most this many prompt rows (variants x batch) advance in one call

    def __init__(self, *args, cache_budget_mb: float = 2048, **kwargs):
        super().__init__(*args, **kwargs)
        self.budget = cache_budget_mb * 2**20
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()  # (batch, schedule prefix) -> state
        self._cache_bytes, self._stamp = 0, None
        self.peak_cache_bytes = 0  # the most the cache held (benchmarks: per-rank memory)

    @torch.no_grad()
    def evaluate(self, parent: list, variants: list[dict], tick=None) -> list[float]:
        self._check_cache()
        return super().evaluate(parent, variants, tick)

    def _final_states(self, bi, h0, ctx, parent, variants, schedules):
        rows = h0.shape[0]
        starts = [min(v) if v else self.n for v in variants]
        before = {}  # (join position, variant or None) -> state
        for j, p in enumerate(starts):
            q = self._deepest_cached(bi, schedules[j], p)  # e.g. a sibling already ran the same prefix
            if q is not None:
                starts[j], before[(q, j)] = q, self._get((bi, tuple(schedules[j][:q])))
        for p in sorted(set(p for j, p in enumerate(starts) if (p, j) not in before)):
            before[(p, None)] = self._state(bi, h0, ctx, parent, p)
        finals = [None] * len(variants)
        order = sorted(range(len(variants)), key=lambda j: starts[j])
        width = max(1, self.wave_rows // rows)
        for c in range(0, len(order), width):
            chunk = order[c:c + width]
            for j, h in zip(chunk, self._wave(bi, ctx, chunk, starts, schedules, before, rows)):
                finals[j] = h
        return finals

    def _wave(self, bi, ctx, members_in, starts, schedules, before, rows):
        """Final states of the variants `members_in`, advanced position by position as one batch."""
        members, parts = [], []  # parts: one state per member, in member order
        first = min(starts[j] for j in members_in)
        for t in range(first, self.n + 1):
            if members and t < self.n:
                parts = self._step(parts, [schedules[j][t] for j in members], ctx, rows, t)
            for j in [j for j in members_in if starts[j] == t]:  # joins at its first change, from the state there
                h = before[(t, j)] if (t, j) in before else before[(t, None)]
                if t < self.n and (schedules[j][t] is not None or self.forward.records(t + 1)):
                    h = self._run(h, ctx, t, t + 1, schedules[j])
                members.append(j)
                parts.append(h)
            if t < self.n:
                for j, h in zip(members, parts):
                    self._put((bi, tuple(schedules[j][:t + 1])), h)
            self._tick(len(members_in) * self._share / (self.n + 1 - first))
        by_member = dict(zip(members, parts))
        return [by_member[j] for j in members_in]

    def _step(self, parts, srcs, ctx, rows, t):
        """Run position t's source for every member; members with the same source share one call
        (a skipped position still records a state the pipeline reads)."""
        out = list(parts)
        for src in dict.fromkeys(srcs):
            if src is None and not self.forward.records(t + 1):
                continue
            idx = [r for r, s in enumerate(srcs) if s == src]
            h = torch.cat([parts[r] for r in idx]) if len(idx) > 1 else parts[idx[0]]
            self.sub_block_evals += rows * len(idx) * (src is not None)
            h = self.forward.step(t, src, h, _repeat_ctx(ctx, rows, len(idx)))
            for r, piece in zip(idx, h.split(rows)):
                out[r] = piece
        return out

    def _state(self, bi, h0, ctx, schedule, p):
        """The state before position p of `schedule`, from the nearest cached prefix."""
        q, h = 0, h0
        for k in range(p, 0, -1):
            found = self._get((bi, tuple(schedule[:k])))
            if found is not None:
                q, h = k, found
                break
        for pos in range(q, p):
            h = self._run(h, ctx, pos, pos + 1, schedule)
            self._put((bi, tuple(schedule[:pos + 1])), h)
        return h

    def _deepest_cached(self, bi, schedule, p):
        """The largest q > p whose state under `schedule` is cached (None if none)."""
        for q in range(self.n, p, -1):
            if (bi, tuple(schedule[:q])) in self._cache:
                return q
        return None

    # --- the cache: LRU within the byte budget ------------------------------------------------
    def _get(self, key):
        h = self._cache.get(key)
        if h is not None:
            self._cache.move_to_end(key)
        return h

    def _put(self, key, h):
        if key in self._cache:
            self._cache.move_to_end(key)
            return
        size = h.numel() * h.element_size()
        if size > self.budget:
            return
        self._cache[key] = h.clone() if h._base is not None else h  # a view would pin its whole batch
        self._cache_bytes += size
        while self._cache_bytes > self.budget:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.numel() * old.element_size()
        self.peak_cache_bytes = max(self.peak_cache_bytes, self._cache_bytes)

    def _check_cache(self):
        """Drop cached states when weights changed in place (LaCo merges between calls) or the
        encoder was restructured: in-place edits bump the parameters' version counters."""
        mods = [self.enc, self.text_side.projection]
        stamp = (tuple(self.enc.branches.keys()),
                 tuple((id(p), p.data_ptr(), p._version) for m in mods for p in m.parameters()))
        if stamp != self._stamp:
            self._cache.clear()
            self._cache_bytes, self._stamp = 0, stamp
