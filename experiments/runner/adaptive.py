"""Adaptive evaluation (`eval.budget=adaptive`): a sweep's rows advance in rounds over growing shares
of the same prompts and seeds, and a row stops once every comparison it takes part in is decided.

Round r scores the share `fractions[r]` of every prompt set (whole generation chunks in one fixed
order, skrr.eval.generate.chunks_for), so every row of a round has the same images' prompts and
seeds and its comparisons stay paired; a larger share holds every image of a smaller one. After the
round, each open comparison (the report's pairs, skrr.experiments.report.claims.comparison_pairs, and
every pruned row against dense, at each target and metric) gets its paired interval again. It is
settled when the interval excludes 0 (a winner) or lies inside +-margin (the difference is smaller
than what matters: "within margin"), or when it has no real chance to be decided by the full budget
(futility: "undecidable"). A row whose comparisons are all settled stops; at the last share (1:
the full budget) every row stops. Looks before the last use a strict level (`interim_level`,
99.99%) and the last one `level` (95%), the Haybittle-Peto rule: only overwhelming evidence stops a
comparison early, and a comparison that runs to the full budget gets the fixed study's verdict.

    results/<experiment>-adaptive/round-f<f>.jsonl   each round's rows: plain rows at that share
    results/<experiment>-adaptive/decisions.json     which rows stopped, when and why; every verdict
    results/<experiment>-adaptive.jsonl              each row at its stopping round (row["budget"])

Every round is a plain run at a fixed share, so a row equals the one `eval.fraction=<its share>`
gives, a killed round resumes from the stage store, and a later full-budget run reuses every image.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from skrr.errors import InputError
from skrr.experiments.runner.results import append_result, file_lock, load_results, results_path
from skrr.plan import write_json_atomic

ROUND_ENV = "SKRR_ADAPTIVE_ROUND"
# futility is judged from this share of a set on: at 1/16 the measured difference is too rough a guess of the
# true one (the toy world's replay stopped a similarity difference there that the full budget decided)
FUTILITY_FROM = 0.25  # set by the driver on the sweeps it launches
# one per metric the report compares (skrr.experiments.report.compare.COMPARED; tests/test_adaptive.py checks)
DEFAULT_MARGINS = {"geneval": 0.02, "geneval2": 0.02, "dreamsim": 0.01, "clip": 0.005, "fid": 1.0}


@dataclass(frozen=True)
class Adaptive:
    """`eval.adaptive`: the shares of each round, the family's level and the margins per metric."""
    fractions: tuple[float, ...] = (0.0625, 0.125, 0.25, 0.5, 1.0)
    level: float = 0.95  # of the final look (the full budget, or a set already scored whole): the fixed study's
    interim_level: float = 0.9999  # of every earlier look (Haybittle-Peto): only overwhelming evidence stops early
    margins: dict = field(default_factory=lambda: dict(DEFAULT_MARGINS))
    metrics: tuple[str, ...] | None = None  # compared metrics (None: every one the report compares)
    min_items: int = 64  # nothing is settled on fewer paired images: a bootstrap of a handful is overconfident
    futility: float = 0.05  # an open comparison whose chance to be decided at the full budget is below this stops

    @classmethod
    def from_config(cls, node) -> Adaptive:
        node = dict(node or {})
        unknown = sorted(set(node) - {"fractions", "level", "interim_level", "margins", "metrics", "min_items",
                                      "futility"})
        if unknown:
            raise InputError(f"eval.adaptive.{unknown[0]} is not a setting; use fractions, level, interim_level, "
                             "margins, metrics, min_items or futility")
        futility = node.get("futility", cls.futility)
        if isinstance(futility, bool) or not isinstance(futility, (int, float)) or not 0 <= futility < 1:
            raise InputError(f"eval.adaptive.futility must be a number in [0, 1) (0: never stop for futility), got {futility!r}")
        min_items = node.get("min_items", cls.min_items)
        if isinstance(min_items, bool) or not isinstance(min_items, int) or min_items < 1:
            raise InputError(f"eval.adaptive.min_items must be a whole number >= 1, got {min_items!r}")
        fractions = tuple(float(f) for f in node.get("fractions", cls.fractions))
        if not fractions or any(not 0 < f <= 1 for f in fractions) or list(fractions) != sorted(set(fractions)) \
                or fractions[-1] != 1:
            raise InputError(f"eval.adaptive.fractions must rise strictly within (0, 1] and end at 1 (the full "
                             f"budget), got {list(fractions)}")
        level = float(node.get("level", cls.level))
        if not 0 < level < 1:
            raise InputError(f"eval.adaptive.level must lie in (0, 1), got {level}")
        interim = float(node.get("interim_level", cls.interim_level))
        if not level <= interim < 1:
            raise InputError(f"eval.adaptive.interim_level must lie in [level, 1), got {interim}")
        margins = {**DEFAULT_MARGINS, **dict(node.get("margins") or {})}
        bad = {k: v for k, v in margins.items() if not (isinstance(v, (int, float)) and v >= 0)}
        if bad:
            raise InputError(f"eval.adaptive.margins.{next(iter(bad))} must be a number >= 0, got {next(iter(bad.values()))}")
        metrics = node.get("metrics")
        unknown = [m for m in metrics or [] if m not in DEFAULT_MARGINS]  # the report's compared metrics
        if unknown:
            raise InputError(f"eval.adaptive.metrics: {unknown[0]!r} is not compared; choose from {list(DEFAULT_MARGINS)}")
        return cls(fractions, level, interim, margins, None if metrics is None else tuple(metrics), min_items,
                   float(futility))


def round_name(experiment: str, fraction: float) -> str:
    """The results name of one round's rows (skrr.experiments.runner.results.results_path)."""
    return f"{experiment}-adaptive/round-f{fraction:g}"


def ledger_path(root, experiment: str) -> Path:
    return Path(root) / "results" / f"{experiment}-adaptive" / "decisions.json"


def row_id(model: str, method: str, method_config: dict, target: float, seed_offset: int = 0) -> str:
    """A row's identity across rounds: what it evaluates, not how much of it."""
    from skrr.experiments.runner.stages import digest

    settings = {k: v for k, v in method_config.items() if k != "sparsity"}
    return digest("adaptive-row", model, method, settings, round(float(target), 4), int(seed_offset or 0))


def id_of(row: dict) -> str:
    return row_id(row["model"], row["method"], row["config"]["method"], row["target"], row.get("seed_offset", 0))


def load_ledger(root, experiment: str) -> dict:
    path = ledger_path(root, experiment)
    return json.loads(path.read_text()) if path.is_file() else {"rounds": [], "rows": {}, "comparisons": []}


def stopped_before(root, experiment: str, key: str, fraction: float) -> dict | None:
    """The ledger's entry for a row that stopped at a smaller share than `fraction` (None: still running)."""
    entry = load_ledger(root, experiment)["rows"].get(key)
    return entry if entry and entry.get("stopped_at") is not None and entry["stopped_at"] < fraction else None


# --- one round's decisions -------------------------------------------------------------------------
def _stub(row: dict) -> dict:
    """What labels and comparison pairs read from a row (kept for rows that stopped)."""
    return {k: row.get(k) for k in ("method", "target", "sparsity", "seed_offset")} | \
        {"config": {"method": row["config"]["method"]}, "model": row["model"]}


def decide(root, experiment: str, fraction: float, settings: Adaptive) -> dict:
    """Settle what this round's rows decide, stop the rows whose comparisons are all settled (all of
    them at the last share), append those rows to results/<experiment>-adaptive.jsonl, and save the
    ledger. Rerunning a round decides the same (the same rows, resamples and seed)."""
    from skrr.experiments.report.claims import comparison_pairs
    from skrr.experiments.report.compare import COMPARED, Point, difference, is_dense
    from skrr.experiments.report.tables import labels

    path = results_path(root, round_name(experiment, fraction))
    rows = {id_of(r): r for r in load_results(path)} if path.is_file() else {}
    ledger = load_ledger(root, experiment)
    if fraction in ledger["rounds"]:
        return ledger  # decided already (a resumed driver): the same rows gave it
    for key, row in rows.items():
        ledger["rows"].setdefault(key, {"row": _stub(row), "stopped_at": None})
    active = {k: r for k, r in rows.items() if ledger["rows"][k]["stopped_at"] is None}
    stubs = [e["row"] for e in ledger["rows"].values()]
    for stub, label in zip(stubs, labels(stubs)):
        stub["label"] = label
    label_of = {k: e["row"]["label"] for k, e in ledger["rows"].items()}
    settled = {(c["a"], c["b"], c["target"], c["metric"]) for c in ledger["comparisons"] if c["verdict"] != "open"}
    dense_key = next((k for k, r in active.items() if is_dense(r, noise_floor=False)), None)
    dense_label = label_of[dense_key] if dense_key else None
    pairs = comparison_pairs([s for s in stubs if s["sparsity"] and s["sparsity"] > 0])
    pruned = sorted({s["label"] for s in stubs if not is_dense(s)})
    pairs += [(label, dense_label) for label in pruned if dense_label]
    by_label = {(label_of[k], round(r["target"], 4)): (k, r) for k, r in active.items() if k != dense_key}
    targets = sorted({round(r["target"], 4) for k, r in active.items() if k != dense_key and not r.get("seed_offset")})
    metrics = settings.metrics or [m for m, _ in COMPARED]
    last = fraction == settings.fractions[-1]
    open_rows: set[str] = set()
    for a, b in pairs:
        for t in targets:
            side_a = by_label.get((a, t))
            side_b = (dense_key, active[dense_key]) if b == dense_label and dense_key else by_label.get((b, t))
            if side_a is None or side_b is None:
                continue  # one side stopped earlier: this comparison was settled then
            for m in metrics:
                if (a, b, t, m) in settled or (m == "dreamsim" and b == dense_label):
                    continue  # similarity to dense is 1 for dense by construction
                n = _paired_items(side_a[1], m)
                n_full = _full_items(side_a[1], m, n)
                final = last or n >= n_full  # no later look can add an image to this comparison
                d = difference(Point(a, t, side_a[1]["sparsity"], "at", [(side_a[1], 1.0)]),
                               Point(b, t, side_b[1]["sparsity"], "at", [(side_b[1], 1.0)]), m,
                               level=settings.level if final else settings.interim_level)
                if d is None:
                    continue  # a metric one side lacks
                verdict = _verdict(d, settings, m, n, n_full, final) if n >= settings.min_items or final else "open"
                if verdict == "open":
                    open_rows |= {side_a[0], side_b[0]}
                    continue
                ledger["comparisons"].append(
                    {"a": a, "b": b, "target": t, "metric": m, "fraction": fraction, "verdict": verdict,
                     "value": d.value, "ci": None if d.interval is None else [d.interval.lo, d.interval.hi],
                     "paired": d.paired})
    stopping = [k for k in active if last or k not in open_rows]
    if dense_key in open_rows and not last:  # the dense noise floor follows dense
        stopping = [k for k in stopping if not (active[k].get("seed_offset") and is_dense(active[k]))]
    for k in stopping:
        why = "full budget" if last else "decided"
        ledger["rows"][k] |= {"stopped_at": fraction, "why": why, "budget": active[k].get("budget")}
        final = {**active[k], "budget": {**(active[k].get("budget") or {}), "mode": "adaptive", "stopped": why,
                                        "rounds": [f for f in settings.fractions if f <= fraction]}}
        append_result(results_path(root, f"{experiment}-adaptive"), final)
    ledger["rounds"].append(fraction)
    path = ledger_path(root, experiment)
    with file_lock(path):
        write_json_atomic(path, ledger)
    return ledger


def _paired_items(row: dict, metric: str) -> int:
    """How many images the row's metric was scored on (its per-image scores)."""
    from skrr.experiments.report.compare import items

    found = items(row, metric)
    return 0 if found is None else len(found.keys)


def _full_items(row: dict, metric: str, n: int) -> int:
    """How many images the metric's prompt set holds at the full budget (n where the row says nothing)."""
    budget = row.get("budget") or {}
    set_name = (budget.get("sets") or {}).get(metric)
    return int((budget.get("of") or {}).get(set_name, n))


def _verdict(d, settings: Adaptive, metric: str, n: int, n_full: int, final: bool) -> str:
    """A winner (the interval excludes 0), "within margin" (it lies inside +-margin), "undecided" (at
    the final look: what the fixed budget says too), "undecidable" (futility: were the true difference
    the one measured, the full budget's interval would exclude 0 with a chance below `futility`), or
    "open" (look again next round)."""
    if d.interval is None:  # no per-image scores: nothing to decide before the full budget
        return "undecided" if final else "open"
    if d.interval.excludes(0):
        return d.winner()
    margin = settings.margins.get(metric, 0.0)
    if -margin < d.interval.lo and d.interval.hi < margin:
        return "within margin"
    if final:
        return "undecided"
    # futility for means only: a FID difference grows with the image count (its bias is no 1/sqrt(n) noise)
    if settings.futility and metric != "fid" and n >= FUTILITY_FROM * n_full and \
            conditional_power(d, n, n_full, settings.interim_level, settings.level) < settings.futility:
        return "undecidable"
    return "open"


def conditional_power(d, n: int, n_full: int, level: float, final_level: float) -> float:
    """The chance that the full budget's interval (at `final_level`) excludes 0 if the true difference is
    the one measured: the standard error, read off the current interval (at `level`), shrinks as
    1/sqrt(images)."""
    from statistics import NormalDist

    z, z_final = (NormalDist().inv_cdf(0.5 + lv / 2) for lv in (level, final_level))
    se_full = d.interval.half_width / z * math.sqrt(n / n_full)
    if se_full == 0:
        return 1.0 if d.value else 0.0
    return NormalDist().cdf(abs(d.value) / se_full - z_final)


# --- the driver: one sweep per round -----------------------------------------------------------
def images_used(root, experiment: str) -> tuple[int, int]:
    """(images the adaptive rows used, images the full budget would use), over every stopped row and set."""
    used = full = 0
    for row in load_results(results_path(root, f"{experiment}-adaptive")):
        budget = row.get("budget") or {}
        used += sum((budget.get("images") or {}).values())
        full += sum((budget.get("of") or {}).values())
    return used, full


def drive(argv: list[str], root, experiment: str, settings: Adaptive) -> int:
    """Run the sweep once per round (`eval.fraction=<share>`), deciding after each, until every row
    has stopped. A killed driver run again resumes: finished stages and rounds are reused."""
    import subprocess
    import sys

    for n, fraction in enumerate(settings.fractions, start=1):
        ledger = load_ledger(root, experiment)
        if ledger["rows"] and all(e["stopped_at"] is not None for e in ledger["rows"].values()):
            break
        print(f"adaptive round {n}/{len(settings.fractions)}: {fraction:g} of every prompt set", flush=True)
        if fraction not in ledger["rounds"]:
            command = [sys.executable, "-m", "skrr.experiments.cli.run", *argv, f"eval.fraction={fraction}"]
            code = subprocess.call(command, env={**os.environ, ROUND_ENV: "1"})
            if code:
                return code
        ledger = decide(root, experiment, fraction, settings)
        stopped = [e for e in ledger["rows"].values() if e["stopped_at"] == fraction]
        still = sum(e["stopped_at"] is None for e in ledger["rows"].values())
        print(f"  {len(stopped)} rows stopped, {still} go on", flush=True)
    used, full = images_used(root, experiment)
    share = f" ({used / full:.1%})" if full else ""
    print(f"adaptive: {used} of the full budget's {full} images{share}; rows in "
          f"{results_path(root, experiment + '-adaptive')}, decisions in {ledger_path(root, experiment)}")
    return 0
