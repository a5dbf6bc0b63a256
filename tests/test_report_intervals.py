"""skrr-report with intervals: `value ± half-width` cells, the matched-sparsity table (interpolated
or nearest point), paired differences from per-image scores, and the claims' verdicts."""
import numpy as np
import pytest

from skrr.eval.intervals import geneval_intervals
from skrr.eval.per_item import Items, item_keys
from skrr.experiments.report.claims import claims, comparison_pairs, differences
from skrr.experiments.report.compare import Point, difference, matched
from skrr.experiments.report.tables import latest, report
from skrr.experiments.runner.results import append_result

TAGS = ["single_object", "two_object", "counting", "colors", "position", "color_attr"]
N = 480
PROMPTS = [f"prompt {i // 2}" for i in range(N)]          # two seeds per prompt
KEYS = np.array(item_keys(PROMPTS, range(N)))
STRATA = np.array([TAGS[(i // 2) % 6] for i in range(N)])
U = np.random.default_rng(0).random(N)                    # shared per-image difficulty: pairs the methods


def scored_row(tmp, method, target, sparsity, rate, **cfg):
    """A row whose GenEval and similarity come from per-image scores saved as skrr-run saves them."""
    correct = (U < rate).astype(float)
    similarity = np.clip(rate + 0.1 * (U - 0.5), 0, 1)
    d = tmp / f"{method}-{target}-{sorted(cfg.items())}"
    geneval = Items.mean(correct, KEYS, PROMPTS, STRATA).save(d / "geneval.npz")
    sim = Items.mean(similarity, KEYS, PROMPTS).save(d / "dreamsim.npz")
    return {"run_key": str(d), "experiment": "t", "finished_at": "2026-01-01T00:00:00", "method": method,
            "model": "toyworld", "target": target, "sparsity": sparsity,
            "metrics": {"geneval": {k: v.as_dict() for k, v in geneval_intervals(correct, STRATA, PROMPTS).items()},
                        "dreamsim": Items.load(sim).interval().as_dict()},
            "plan": {"depth_d": None}, "artifacts": {"items": {"geneval": str(geneval), "dreamsim": str(sim)}},
            "config": {"method": {"name": method, "sparsity": target, **cfg}}}


def labelled(rows):
    return latest(rows)


def test_table_cells_show_half_widths_and_old_rows_the_value(tmp_path):
    new = scored_row(tmp_path, "skrr", 0.3, 0.3, 0.6)
    old = {**scored_row(tmp_path, "shortgpt", 0.3, 0.3, 0.5), "artifacts": {},
           "metrics": {"geneval": {"overall": 0.5}, "dreamsim": 0.75}}
    store = tmp_path / "r.jsonl"
    for r in (new, old):
        append_result(store, r)
    report(store, tmp_path / "rep")
    md = (tmp_path / "rep" / "table1.md").read_text()
    ci = new["metrics"]["geneval"]["overall"]["ci"]
    hw = (ci[1] - ci[0]) / 2
    assert f"| {new['metrics']['geneval']['overall']['value']:.3f} ± {hw:.3f} |" in md
    assert "| ShortGPT | 30.0% | – | – | 0.750 | – | – | – | – | – | – | 0.500 |" in md  # old row: values only
    # the old row has no interval and no per-image scores: the difference is shown without a verdict
    d = difference(*[Point(r["label"], 0.3, 0.3, "at", [(r, 1.0)]) for r in latest([new, old])[::-1]], "geneval")
    assert d.beyond_noise is None and not d.paired and d.value == pytest.approx(new["metrics"]["geneval"]["overall"]["value"] - 0.5)


def test_matched_points_interpolate_between_achieved_points_or_take_the_nearest(tmp_path):
    rows = labelled([scored_row(tmp_path, "skrr", t, s, q) for t, s, q in ((0.24, 0.20, 0.8), (0.32, 0.30, 0.6),
                                                                            (0.40, 0.322, 0.5))]
                    + [scored_row(tmp_path, "shortgpt", t, s, q) for t, s, q in ((0.24, 0.244, 0.7), (0.40, 0.43, 0.3))])
    pts = {(p.label, p.level): p for p in matched(rows)}
    skrr24 = pts["Skrr", 0.24]                     # between 20% and 30%: weight 0.4 on the 30% point
    a, b = (r["metrics"]["geneval"]["overall"] for r in rows if r["label"] == "Skrr" and r["sparsity"] < 0.31)
    e = skrr24.estimate("geneval")
    assert skrr24.how == "interp" and e.value == pytest.approx(0.6 * a["value"] + 0.4 * b["value"])
    assert (e.lo, e.hi) == pytest.approx((0.6 * a["ci"][0] + 0.4 * b["ci"][0], 0.6 * a["ci"][1] + 0.4 * b["ci"][1]))
    assert pts["Skrr", 0.32].how == "at"           # 32.2% is within half a percent of 32%
    assert pts["Skrr", 0.40].how == "nearest" and pts["Skrr", 0.40].sparsity == pytest.approx(0.322)
    assert pts["ShortGPT", 0.24].how == "at" and pts["ShortGPT", 0.32].how == "interp"
    store = tmp_path / "m.jsonl"
    for r in rows:
        append_result(store, {k: v for k, v in r.items() if k != "label"})
    report(store, tmp_path / "rep")
    md = (tmp_path / "rep" / "matched.md").read_text()
    assert "| Skrr | 24% | 24.0% (interp.) |" in md and "| Skrr | 40% | 32.2% (nearest) |" in md
    assert "| ShortGPT | 24% | 24.4% |" in md


def test_paired_differences_and_claims(tmp_path):
    dense = scored_row(tmp_path, "dense", 0.0, 0.0, 0.8)
    rows = [dense]
    for method, rate in (("shortgpt", 0.35), ("laco", 0.4), ("finercut", 0.58), ("skrr", 0.6)):
        rows += [scored_row(tmp_path, method, t, t, rate, beam_width=3, reuse=True) for t in (0.24, 0.32, 0.40)]
    rows += [scored_row(tmp_path, "skrr", t, t, 0.6, beam_width=3, reuse=False) for t in (0.24, 0.32, 0.40)]
    rows = labelled(rows)
    skrr = "Skrr (reuse=True)"  # two variants, neither the usual one: the default settings' variant stands for Skrr
    assert (skrr, "ShortGPT") in comparison_pairs(rows) and (skrr, "Skrr (reuse=False)") in comparison_pairs(rows)
    diffs = {(d.a, d.b, d.level, d.metric): d for d in differences(rows)}
    big = diffs[skrr, "ShortGPT", 0.40, "geneval"]
    assert big.paired and big.beyond_noise and big.winner() == skrr
    # shared per-image difficulty: the paired interval is far tighter than the two marginal ones
    marginal = [r["metrics"]["geneval"]["overall"]["ci"] for r in rows if r["label"] in (skrr, "FinerCut")][:2]
    close = diffs[skrr, "FinerCut", 0.40, "geneval"]
    assert close.interval.half_width < 0.5 * sum((hi - lo) / 2 for lo, hi in marginal)
    same = diffs[skrr, "Skrr (reuse=False)", 0.40, "geneval"]  # identical scores: no difference at all
    assert same.value == 0 and not same.beyond_noise
    text = "\n".join(claims(rows))
    assert "(a) Skrr holds GenEval" in text and "**mixed**" not in text.split("\n")[0]
    assert "(c) Re-use helps: **not resolved: every difference is within the noise**" in text
    assert "(d) block-level methods" in text and "Dense − ShortGPT at 40%" in text
    assert "(b) a larger k lowers D and improves quality: not measured" in text
    store = tmp_path / "c.jsonl"
    for r in rows:
        append_result(store, {k: v for k, v in r.items() if k != "label"})
    report(store, tmp_path / "rep")
    comp = (tmp_path / "rep" / "comparisons.md").read_text()
    expected = np.mean([((U >= 0.35) & (U < 0.6))[STRATA == t].mean() for t in TAGS])  # mean of task differences
    assert f"| GenEval overall | {skrr} − ShortGPT | {expected:+.3f} ±" in comp and f"{skrr} better than ShortGPT" in comp


def test_claim_verdicts_follow_the_intervals(tmp_path):
    rows = [scored_row(tmp_path, "dense", 0.0, 0.0, 0.8)]
    for method, rate in (("shortgpt", 0.7), ("laco", 0.7), ("finercut", 0.7), ("skrr", 0.5)):  # Skrr loses
        rows += [scored_row(tmp_path, method, t, t, rate) for t in (0.24, 0.32, 0.40)]
    first = claims(labelled(rows))[0]
    assert first.startswith("(a)") and "**contradicted**" in first
