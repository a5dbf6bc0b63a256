"""The report's comparisons: which differences at a sparsity level are larger than their noise, the
dense model's noise floor, and the paper's claims (a)-(d) with the verdict the rows give.

Compared pairs: every two methods' representative rows (Skrr - ShortGPT, ...: each method's plain
label, or its variant with the default settings), and within a method every two
variants that differ in one setting (beam width 4 - 1, reuse True - False, ...). A difference is
larger than its noise when its paired 95% interval excludes 0, or, where pairing is impossible,
when the two methods' intervals do not overlap.
"""
from __future__ import annotations

from functools import cache
from itertools import combinations
from pathlib import Path

from omegaconf import OmegaConf

from skrr.config.files import CONF_DIR
from skrr.experiments.report.compare import (
    COMPARED,
    LEVELS,
    METHOD_NAMES,
    METHOD_ORDER,
    Difference,
    Point,
    difference,
    estimate,
    is_dense,
    matched,
)

BASELINES = ("shortgpt", "laco", "finercut")
BLOCK_LEVEL = ("shortgpt", "laco")
NOT_SETTINGS = {"sparsity", "batch_size", "fast", "cache_budget_mb"}
QUALITY = ("geneval", "dreamsim")   # what the paper's claims are about
NAMES = dict(COMPARED)


def _settings(row: dict) -> dict:
    return {k: v for k, v in row["config"]["method"].items() if k not in NOT_SETTINGS}


def _order(value) -> tuple:
    return (0, value) if isinstance(value, (int, float)) else (1, repr(value))


def comparison_pairs(rows: list[dict]) -> list[tuple[str, str]]:
    """(a, b) label pairs, a the later method (Skrr last) or the larger setting (k=4 before k=1)."""
    info = {}
    for r in rows:
        if r["sparsity"] > 0:
            info.setdefault(r["label"], (r["method"], _settings(r)))
    methods = sorted({m for m, _ in info.values()}, key=lambda m: METHOD_ORDER.index(m) if m in METHOD_ORDER else 99)
    plain = [lab for lab in (representative(rows, m) for m in methods) if lab]
    pairs = [(b, a) for a, b in combinations(plain, 2)]
    for a, b in combinations(sorted(info), 2):
        (ma, ca), (mb, cb) = info[a], info[b]
        diff = [k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k)]
        if ma == mb and len(diff) == 1:
            k = diff[0]
            pairs.append((a, b) if _order(ca.get(k)) > _order(cb.get(k)) else (b, a))
    return pairs


def differences(rows: list[dict], levels=LEVELS) -> list[Difference]:
    points = {(p.label, p.level): p for p in matched(rows, levels)}
    out = []
    for a, b in comparison_pairs(rows):
        for level in levels:
            for name, _ in COMPARED:
                if (a, level) in points and (b, level) in points:
                    d = difference(points[a, level], points[b, level], name)
                    if d is not None:
                        out.append(d)
    return out


def cell(d: Difference | None, fmt: str) -> str:
    if d is None:
        return "–"
    mark = ("" if d.matched else " †") + (" *" if d.beyond_noise else "")
    if d.paired:
        return f"{d.value:+{fmt}} ± {d.interval.half_width:{fmt}}{mark}"
    return f"{d.value:+{fmt}}" + {None: "", True: " (apart)", False: " (overlap)"}[d.beyond_noise] + mark


def differences_markdown(diffs: list[Difference], levels=LEVELS) -> str:
    if not diffs:
        return ""
    index = {(d.a, d.b, d.level, d.metric): d for d in diffs}
    pairs = list(dict.fromkeys((d.a, d.b) for d in diffs))
    header = ["Metric", "Difference"] + [f"{lv:.0%}" for lv in levels]
    body = []
    for name, title in COMPARED:
        fmt = ".2f" if name == "fid" else ".3f"
        body += [[title, f"{a} − {b}"] + [cell(index.get((a, b, lv, name)), fmt) for lv in levels]
                 for a, b in pairs if any((a, b, lv, name) in index for lv in levels)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in body]
    lines += ["", "`±`: half-width of the paired 95% bootstrap interval (same prompts and seeds; without pairing, "
              "(apart)/(overlap) say whether the two 95% intervals overlap). `*`: larger than its noise. "
              "`†`: a side is its method's nearest achieved point, at another sparsity (see the matched table). "
              "FID: lower is better.", "", "**Larger than the noise:**"]
    summary = []
    for a, b in pairs:
        wins = {}
        for d in diffs:
            if (d.a, d.b) == (a, b) and d.beyond_noise:
                wins.setdefault(d.winner(), {}).setdefault(NAMES[d.metric], []).append(f"{d.level:.0%}")
        for who, by_metric in wins.items():
            summary.append(f"- {who} better than {b if who == a else a}: "
                           + "; ".join(f"{m} at {', '.join(lv)}" for m, lv in by_metric.items()))
    return "\n".join(lines + (summary or ["- none: every compared difference is within its noise"])) + "\n"


def noise_floor(rows: list[dict]) -> str | None:
    """The dense model on two disjoint seed sets: how far a metric moves with the seeds alone."""
    dense = [r for r in rows if is_dense(r)]
    base = next((r for r in dense if not r.get("seed_offset")), None)
    other = next((r for r in dense if r.get("seed_offset")), None)
    if base is None or other is None:
        return None
    parts = []
    for name, title in COMPARED:
        a, b = estimate(base, name), estimate(other, name)
        if a is not None and b is not None and name != "dreamsim":  # similarity of dense to itself is 1 by construction
            parts.append(f"{title} {a.value:.3g} vs {b.value:.3g} (|Δ| = {abs(a.value - b.value):.3g})")
    return ("**Dense noise floor** (the dense model on disjoint seeds, same prompts): " + "; ".join(parts)
            + ". A difference between methods no larger than this is seed noise.") if parts else None


# --- the paper's claims ---------------------------------------------------------------------------
def verdict(diffs: list[Difference], favoured: set[str]) -> str:
    """Whether the measured differences favour `favoured` labels beyond their noise."""
    if not diffs:
        return "not measured (rows missing)"
    if all(d.beyond_noise is None for d in diffs):
        return "no intervals (rows stored without them)"
    wins = [d for d in diffs if d.beyond_noise and d.winner() in favoured]
    losses = [d for d in diffs if d.beyond_noise and d.winner() not in favoured]
    if losses:
        return "mixed" if wins else "contradicted"
    if len(wins) == len(diffs):
        return "supported"
    return f"partly supported ({len(wins)} of {len(diffs)} differences beyond noise)" if wins else \
        "not resolved: every difference is within the noise"


def _detail(d: Difference) -> str:
    hw = f" ± {d.interval.half_width:.3f}" if d.paired else (" (intervals apart)" if d.beyond_noise else " (overlap)")
    where = "" if d.matched else " (a side at its nearest achieved sparsity)"
    return f"{d.a} − {d.b} at {d.level:.0%}{where}, {NAMES[d.metric]}: {d.value:+.3f}{hw}"


def representative(rows: list[dict], method: str) -> str | None:
    """The label that stands for a method in cross-method comparisons: its plain label, else the
    variant with the method's default settings (conf/method/<name>.yaml), else its only label."""
    found = list(dict.fromkeys(r["label"] for r in rows if r["method"] == method and r["sparsity"] > 0))
    plain = [lab for lab in found if "(" not in lab]
    if plain or len(found) <= 1:
        return (plain or found or [None])[0]
    defaults = default_settings(method)
    for lab in found:
        cfg = next(_settings(r) for r in rows if r["label"] == lab)
        if defaults and all(cfg.get(k) == v for k, v in defaults.items() if k in cfg):
            return lab
    return None


@cache
def _defaults(method: str) -> tuple:
    path = Path(CONF_DIR) / "method" / f"{method}.yaml"
    if not path.is_file():
        return ()
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return tuple((k, v) for k, v in cfg.items() if k not in NOT_SETTINGS and not isinstance(v, (dict, list)))


def default_settings(method: str) -> dict:
    return dict(_defaults(method))


def _one_setting_pairs(rows, key: str) -> list[tuple[str, str]]:
    return [(a, b) for a, b in comparison_pairs(rows) if f"{key}=" in a or f"{key}=" in b
            if _differs_only_in(rows, a, b, key)]


def _differs_only_in(rows, a, b, key) -> bool:
    ca = next(_settings(r) for r in rows if r["label"] == a)
    cb = next(_settings(r) for r in rows if r["label"] == b)
    return [k for k in set(ca) | set(cb) if ca.get(k) != cb.get(k)] == [key]


def _depth_d(rows, label) -> list[float] | None:
    return next((r["plan"].get("depth_d") for r in rows if r["label"] == label and r["plan"].get("depth_d")), None)


def claims(rows: list[dict]) -> list[str]:
    points = {(p.label, p.level): p for p in matched(rows)}
    high = LEVELS[-1]
    skrr = representative(rows, "skrr")
    out = []

    # (a) Skrr vs each baseline at the highest level, on GenEval and similarity
    present = [b for b in (representative(rows, x) for x in BASELINES) if b]
    diffs = [difference(points[skrr, high], points[b, high], m) for m in QUALITY for b in present if skrr]
    diffs = [d for d in diffs if d is not None]
    out.append(_claim("(a) Skrr holds GenEval and similarity better than ShortGPT, LaCo and FinerCut at ~40%",
                      diffs, {skrr}, missing=_missing(rows, BASELINES)))

    # (b) a larger beam width k lowers D and improves quality
    beam = sorted({lab for pair in _one_setting_pairs(rows, "beam_width") for lab in pair},
                  key=lambda lab: next(r["config"]["method"]["beam_width"] for r in rows if r["label"] == lab))
    if len(beam) >= 2:
        lo, hi = beam[0], beam[-1]
        diffs = [d for lv in LEVELS for m in QUALITY if (hi, lv) in points and (lo, lv) in points
                 for d in [difference(points[hi, lv], points[lo, lv], m)] if d is not None]
        curves = {lab: _depth_d(rows, lab) for lab in beam}
        text = _claim("(b) a larger k lowers D and improves quality", diffs, {hi}, prefix="quality: ")
        if all(curves.values()):
            depth = min(len(c) for c in curves.values())
            ds = [curves[lab][depth - 1] for lab in beam]
            lower = sum(curves[beam[i + 1]][d] <= curves[beam[i]][d] for i in range(len(beam) - 1) for d in range(depth))
            text += (f"\n  - D at depth {depth}: " + ", ".join(f"{lab}: {v:.4g}" for lab, v in zip(beam, ds))
                     + f"; a larger k gave a lower or equal D at {lower} of {(len(beam) - 1) * depth} (k, depth) steps")
        out.append(text)
    else:
        out.append("(b) a larger k lowers D and improves quality: not measured (no beam-width ablation rows)")

    # (c) Re-use helps: reuse on - off, same Skip search
    pairs = _one_setting_pairs(rows, "reuse")
    diffs = [d for a, b in pairs for lv in LEVELS for m in QUALITY if (a, lv) in points and (b, lv) in points
             for d in [difference(points[a, lv], points[b, lv], m)] if d is not None]
    out.append(_claim("(c) Re-use helps", diffs, {a for a, _ in pairs}))

    # (d) block-level methods collapse at high sparsity: below Skrr and below dense, on GenEval
    dense = next((r for r in rows if is_dense(r, noise_floor=False)), None)
    diffs = []
    present = [b for b in (representative(rows, x) for x in BLOCK_LEVEL) if b]
    for b in present:
        if skrr:
            diffs.append(difference(points[skrr, high], points[b, high], "geneval"))
        if dense is not None:
            diffs.append(difference(Point("Dense", high, 0.0, "at", [(dense, 1.0)]), points[b, high], "geneval"))
    diffs = [d for d in diffs if d is not None]
    out.append(_claim("(d) block-level methods (ShortGPT, LaCo) collapse at high sparsity (~40%: GenEval below "
                      "both Skrr and the dense model beyond the noise)", diffs, {skrr, "Dense"},
                      missing=_missing(rows, BLOCK_LEVEL)))
    return out


def _missing(rows, methods) -> str:
    names = [METHOD_NAMES[m] for m in methods if representative(rows, m) is None]
    return f"; no rows of {', '.join(names)}" if names and len(names) < len(methods) else ""


def _claim(title: str, diffs: list[Difference], favoured: set, prefix: str = "", missing: str = "") -> str:
    return f"{title}: **{prefix}{verdict(diffs, favoured)}{missing}**" + "".join(f"\n  - {_detail(d)}" for d in diffs)
