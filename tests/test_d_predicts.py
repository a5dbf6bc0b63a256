"""Does D predict quality: every plan's D on one yardstick (a default Skrr plan's is its own d_final,
a LaCo plan's is computed with its merged weights), and Spearman's rho with a bootstrap interval
over plans, said in words per metric."""
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.stats import spearmanr

from skrr.experiments.report import d_predicts
from skrr.experiments.report.tables import report
from skrr.experiments.runner.plan_d import SETTINGS, plan_discrepancies
from skrr.experiments.runner.results import append_result
from skrr.plan import Plan
from skrr.prune import make_context, prune

CONF = Path(__file__).resolve().parents[1] / "conf"
CALIB = {"source": "builtin", "size": 8, "seed": 0, "pool": 2000, "min_tokens": None, "max_tokens": None}


@pytest.fixture(scope="module")
def ctx():
    return make_context("tiny_pixart", OmegaConf.create(CALIB), projection=True, progress=False)


def test_a_default_skrr_plan_scores_its_own_d_final_and_laco_uses_its_merged_weights(tmp_path, ctx):
    (skrr,) = prune(ctx.text_side, {"name": "skrr", "beam_width": 1, "sparsity": 0.3}, CALIB, progress=False)
    skrr.save(tmp_path / "skrr.json")
    laco_cfg = OmegaConf.merge(OmegaConf.load(CONF / "method" / "laco.yaml"), {"sparsity": 0.3, "T": 0.0})
    laco = prune(ctx.text_side, laco_cfg, CALIB, progress=False)[0]
    laco.save(tmp_path / "laco.json")
    assert laco.weights  # LaCo changed weights: D must see them
    before = {k: v.clone() for k, v in ctx.text_side.encoder.state_dict().items()}
    d = plan_discrepancies({}, CALIB, [(0.3, tmp_path / "skrr.json"), (0.31, tmp_path / "laco.json")], ctx=ctx)
    assert d["0.3000"] == skrr.info["d_final"]  # the same yardstick as Skrr's own search, bit for bit
    assert all(torch.equal(before[k], v) for k, v in ctx.text_side.encoder.state_dict().items())  # restored
    without = Plan.load(tmp_path / "laco.json")
    without.weights = None
    disc = ctx.discrepancy(SETTINGS["metric"], SETTINGS["projection"], SETTINGS["null_term"])
    assert d["0.3100"] > 0 and d["0.3100"] != disc(without.schedule(len(ctx.sub_blocks)))


def test_spearman_matches_scipy_and_its_interval_covers_it():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=30)
    y = -x + rng.normal(0, 0.3, 30)
    y[3] = y[4]  # a tie
    assert d_predicts.spearman(x, y) == pytest.approx(spearmanr(x, y).statistic, abs=1e-12)
    rho, lo, hi = d_predicts.rank_interval(x, y)
    assert lo <= rho <= hi < 0
    assert math.isnan(d_predicts.spearman(x, np.ones(30)))


def rows_where(metric_of_d, n=12, seed=0):
    rng = np.random.default_rng(seed)
    out = [{"run_key": "dense", "method": "dense", "target": 0.0, "sparsity": 0.0, "discrepancy": {"value": 0.0},
            "metrics": {"dreamsim": 1.0}}]
    for i in range(n):
        d = float(rng.uniform(0.01, 0.1))
        out.append({"run_key": str(i), "method": "skrr", "target": 0.24, "sparsity": 0.24, "discrepancy": {"value": d},
                    "metrics": {"dreamsim": metric_of_d(d, rng), "fid": 100 * metric_of_d(d, rng)}})
    return out


def test_verdicts_say_whether_lower_d_goes_with_better_images():
    good = {(r.metric, r.scope): r for r in d_predicts.ranks(rows_where(lambda d, rng: 1 - d))}
    assert good[("Similarity to dense", "all levels")].verdict.startswith("Similarity to dense (all levels): D predicts")
    assert good[("FID", "all levels")].verdict.startswith("FID (all levels): D ranks it the wrong way")  # lower FID is better
    assert good[("Similarity to dense", "24%")].plans == 12  # dense (D = 0) is not a plan to rank
    noise = {(r.metric, r.scope): r for r in d_predicts.ranks(rows_where(lambda d, rng: float(rng.uniform()), seed=3))}
    assert "interval includes 0" in noise[("Similarity to dense", "all levels")].verdict


def test_report_writes_the_table_and_the_plot(tmp_path):
    results = tmp_path / "results" / "t.jsonl"
    results.parent.mkdir()
    for r in rows_where(lambda d, rng: 1 - d + float(rng.normal(0, 0.01))):
        append_result(results, {**r, "experiment": "t", "finished_at": "2026-01-01T00:00:00", "model": "m",
                                "plan": {}, "config": {"method": {"name": r["method"], "seed": r["run_key"]}}})
    files = report(results, tmp_path / "rep")["m"]
    assert files["d_vs_metrics"].is_file() and files["d_vs_metrics"].stat().st_size > 10_000
    text = files["d_predicts"].read_text()
    assert "| Similarity to dense | all levels | 12 |" in text and "D predicts it" in text
