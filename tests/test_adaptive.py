"""Adaptive evaluation: shares of the prompts as whole chunks, the round decisions, and the driver end
to end on a tiny sweep (resume after a kill, rows equal to a straight run at the same share, images
reused by a later full budget)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from skrr.errors import InputError
from skrr.eval import generate as gen
from skrr.eval.per_item import Items
from skrr.experiments.report.compare import Point, difference
from skrr.experiments.runner.adaptive import Adaptive, decide, id_of, ledger_path, round_name
from skrr.experiments.runner.results import append_result, load_results, results_path

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}


# --- shares -------------------------------------------------------------------------------------------
def test_shares_are_nested_whole_chunks_and_cover_the_set_at_one():
    n, batch = 1000, 16
    shares = [gen.chunks_for(f, n, batch) for f in (0.0625, 0.125, 0.25, 0.5)]
    for small, large in zip(shares, shares[1:]):
        assert set(small) < set(large)  # a larger share holds every image of a smaller one
    assert [len(s) for s in shares] == [4, 8, 16, 32]  # ceil(f x 63 chunks)
    assert gen.chunks_for(1.0, n, batch) is None and gen.chunks_for(0.999, 100, 50) is None
    # the chunks are spread over the set (GenEval's file is grouped by task), not its head
    assert max(shares[1]) > gen.num_chunks(n, batch) // 2


def test_a_share_is_split_over_ranks_exactly_once():
    only = gen.chunks_for(0.5, 100, 8)
    per_rank = [gen.share(r, 3, 100, 8, only) for r in range(3)]
    joined = sorted(i for part in per_rank for i in part)
    assert joined == gen.share(0, 1, 100, 8, only) and len(set(joined)) == len(joined)
    assert all(i // 8 in only for i in joined)


@pytest.mark.parametrize("node, key", [({"fractions": [0.5, 0.25, 1.0]}, "fractions"), ({"fractions": [0.5]}, "fractions"),
                                       ({"level": 1.0}, "level"), ({"margins": {"fid": -1}}, "margins.fid"),
                                       ({"min_items": 0}, "min_items"), ({"metrics": ["fd"]}, "metrics"),
                                       ({"interim_level": 0.9}, "interim_level"), ({"futility": 1}, "futility"),
                                       ({"rounds": 3}, "rounds")])
def test_bad_adaptive_settings_name_their_key(node, key):
    from skrr.experiments.report.compare import COMPARED
    from skrr.experiments.runner.adaptive import DEFAULT_MARGINS

    assert sorted(DEFAULT_MARGINS) == sorted(m for m, _ in COMPARED)  # a margin for every compared metric
    with pytest.raises(InputError, match=f"eval.adaptive.{key}"):
        Adaptive.from_config(node)


# --- decisions ------------------------------------------------------------------------------------------
def _row(tmp: Path, method: str, target: float, scores: np.ndarray, keys: list[str], fraction: float) -> dict:
    path = tmp / "items" / f"{method}-{target}-{fraction}.npz"
    Items.mean(scores, keys).save(path)
    return {"run_key": f"{method}-{target}-{fraction}", "model": "m", "method": method, "target": target,
            "sparsity": target, "finished_at": "2026-12-06T00:00:00",
            "config": {"method": {"name": method, "sparsity": target}},
            "metrics": {"clip": {"value": float(scores.mean()), "ci": [0.0, 1.0]}},
            "artifacts": {"items": {"clip": str(path)}},
            "budget": {"mode": "adaptive", "fraction": fraction, "images": {"text": len(keys)}, "of": {"text": 400},
                       "sets": {"clip": "text"}}}


def _write_round(root: Path, rows: list[dict], fraction: float) -> None:
    for row in rows:
        append_result(results_path(root, round_name("x", fraction)), row)


def test_rows_stop_when_their_comparisons_are_decided(tmp_path):
    """ShortGPT is clearly below both others: its comparisons are decided at the first round and it
    stops. Skrr vs dense differ by noise wider than the margin: they go on to the full budget."""
    rng = np.random.default_rng(0)
    keys = [f"{i}|prompt {i}" for i in range(400)]
    dense = rng.normal(0.30, 0.03, 400)
    skrr = dense + rng.normal(0.0, 0.05, 400)
    short = dense - 0.2 + rng.normal(0.0, 0.01, 400)
    settings = Adaptive.from_config({"fractions": [0.25, 0.5, 1.0], "metrics": ["clip"], "min_items": 20, "futility": 0})
    for f, n in ((0.25, 100), (0.5, 200), (1.0, 400)):
        rows = [_row(tmp_path, "dense", 0.0, dense[:n], keys[:n], f), _row(tmp_path, "skrr", 0.3, skrr[:n], keys[:n], f)]
        if f == 0.25:  # the jobs of later rounds skip a stopped row
            rows.append(_row(tmp_path, "shortgpt", 0.3, short[:n], keys[:n], f))
        _write_round(tmp_path, rows, f)
        ledger = decide(tmp_path, "x", f, settings)
    by_label = {e["row"]["label"]: e for e in ledger["rows"].values()}
    assert by_label["ShortGPT"]["stopped_at"] == 0.25 and by_label["ShortGPT"]["why"] == "decided"
    assert by_label["Skrr"]["stopped_at"] == 1.0 and by_label["Dense"]["why"] == "full budget"
    verdicts = {(c["a"], c["b"]): (c["verdict"], c["fraction"]) for c in ledger["comparisons"]}
    assert verdicts[("Skrr", "ShortGPT")] == ("Skrr", 0.25) and verdicts[("ShortGPT", "Dense")] == ("Dense", 0.25)
    assert verdicts[("Skrr", "Dense")] == ("undecided", 1.0)
    final = load_results(results_path(tmp_path, "x-adaptive"))
    assert sorted((r["method"], r["budget"]["fraction"], r["budget"]["stopped"]) for r in final) == \
        [("dense", 1.0, "full budget"), ("shortgpt", 0.25, "decided"), ("skrr", 1.0, "full budget")]
    # deciding a round again changes nothing: the ledger keeps its rounds, the final rows are not repeated
    assert decide(tmp_path, "x", 1.0, settings) == json.loads(ledger_path(tmp_path, "x").read_text())
    assert len(load_results(results_path(tmp_path, "x-adaptive"))) == 3


def test_a_difference_within_the_margin_settles(tmp_path):
    rng = np.random.default_rng(1)
    keys = [f"{i}|p{i}" for i in range(300)]
    dense = rng.normal(0.3, 0.03, 300)
    skrr = dense + rng.normal(0.0, 0.001, 300)  # equal to well within clip's margin (0.005)
    settings = Adaptive.from_config({"fractions": [0.5, 1.0], "metrics": ["clip"], "min_items": 20})
    _write_round(tmp_path, [_row(tmp_path, "dense", 0.0, dense, keys, 0.5), _row(tmp_path, "skrr", 0.3, skrr, keys, 0.5)], 0.5)
    ledger = decide(tmp_path, "x", 0.5, settings)
    assert [c["verdict"] for c in ledger["comparisons"]] == ["within margin"]
    assert {e["stopped_at"] for e in ledger["rows"].values()} == {0.5}


def test_early_looks_need_overwhelming_evidence_and_the_last_is_the_fixed_studys(tmp_path):
    """A difference beyond 95% but not 99.9% stays open at an interim look (Haybittle-Peto) and is
    decided at the full budget with the fixed study's 95% verdict; a tiny difference with wide noise
    stops early as undecidable (futility)."""
    rng = np.random.default_rng(3)
    keys = [f"{i}|p{i}" for i in range(400)]
    dense = rng.normal(0.5, 0.1, 400)
    halves = rng.normal(0.0, 0.1, (2, 200))
    noise = (halves - halves.mean(1, keepdims=True)).ravel()  # each round's share has mean noise exactly 0
    skrr = dense - 0.012 + noise  # mean difference -0.012 in both rounds: z of about 1.7 at 200, 2.4 at 400 images
    tiny = dense + noise  # no difference at all: nothing for 400 images to decide
    settings = Adaptive.from_config({"fractions": [0.5, 1.0], "metrics": ["clip"], "min_items": 20,
                                     "margins": {"clip": 0.0}})
    for f, n in ((0.5, 200), (1.0, 400)):
        rows = [_row(tmp_path, "dense", 0.0, dense[:n], keys[:n], f), _row(tmp_path, "skrr", 0.3, skrr[:n], keys[:n], f)]
        if f == 0.5:
            rows.append(_row(tmp_path, "shortgpt", 0.3, tiny[:n], keys[:n], f))
        _write_round(tmp_path, rows, f)
        ledger = decide(tmp_path, "x", f, settings)
    verdicts = {(c["a"], c["b"]): (c["verdict"], c["fraction"]) for c in ledger["comparisons"]}
    assert verdicts[("Skrr", "Dense")] == ("Dense", 1.0)
    assert verdicts[("ShortGPT", "Dense")] == ("undecidable", 0.5)
    full = difference(Point("Skrr", 0.3, 0.3, "at", [(_row(tmp_path, "skrr", 0.3, skrr, keys, 2.0), 1.0)]),
                      Point("Dense", 0.3, 0.0, "at", [(_row(tmp_path, "dense", 0.0, dense, keys, 2.0), 1.0)]), "clip")
    assert full.beyond_noise and full.winner() == "Dense"  # the fixed study's verdict, at 95%


def test_a_set_scored_whole_in_the_first_round_is_final_there(tmp_path):
    keys = [f"{i}|p{i}" for i in range(64)]
    rng = np.random.default_rng(4)
    a = rng.normal(0.5, 0.2, 64)
    settings = Adaptive.from_config({"fractions": [0.25, 1.0], "metrics": ["clip"], "min_items": 20})
    rows = [_row(tmp_path, "dense", 0.0, a, keys, 0.25), _row(tmp_path, "skrr", 0.3, a + rng.normal(0, 0.2, 64), keys, 0.25)]
    for r in rows:
        r["budget"] = {"images": {"geneval2": 64}, "of": {"geneval2": 64}, "sets": {"clip": "geneval2"}}
    _write_round(tmp_path, rows, 0.25)
    ledger = decide(tmp_path, "x", 0.25, settings)
    assert [c["verdict"] for c in ledger["comparisons"]] == ["undecided"]  # more rounds add no image to it
    assert {e["stopped_at"] for e in ledger["rows"].values()} == {0.25}


def test_too_few_images_settle_nothing(tmp_path):
    keys = [f"{i}|p{i}" for i in range(10)]
    settings = Adaptive.from_config({"fractions": [0.5, 1.0], "metrics": ["clip"], "min_items": 20})
    _write_round(tmp_path, [_row(tmp_path, "dense", 0.0, np.ones(10), keys, 0.5),
                            _row(tmp_path, "skrr", 0.3, np.zeros(10), keys, 0.5)], 0.5)
    ledger = decide(tmp_path, "x", 0.5, settings)
    assert all(e["stopped_at"] is None for e in ledger["rows"].values()) and not ledger["comparisons"]


def test_rows_of_nested_shares_pair_on_the_smaller_share(tmp_path):
    """The report pairs an adaptive row that stopped early with one that went on, on the images both have."""
    rng = np.random.default_rng(2)
    keys = [f"{i}|p{i}" for i in range(200)]
    a, b = rng.normal(0.5, 0.1, 200), rng.normal(0.4, 0.1, 200)
    early = _row(tmp_path, "skrr", 0.3, a[:50], keys[:50], 0.25)
    late = _row(tmp_path, "shortgpt", 0.3, b, keys, 1.0)
    d = difference(Point("Skrr", 0.3, 0.3, "at", [(early, 1.0)]), Point("ShortGPT", 0.3, 0.3, "at", [(late, 1.0)]), "clip")
    cut = _row(tmp_path, "shortgpt", 0.3, b[:50], keys[:50], 0.5)
    same = difference(Point("Skrr", 0.3, 0.3, "at", [(early, 1.0)]), Point("ShortGPT", 0.3, 0.3, "at", [(cut, 1.0)]), "clip")
    assert d.paired and d.value == pytest.approx(same.value) and d.interval.lo == pytest.approx(same.interval.lo)


# --- the driver, end to end on the tiny sweep ----------------------------------------------------------
PROMPTS = ("[a photo of a cat,a red car,two dogs on grass,a blue bench,a green apple,an old man,a tall tree,"
           "a small boat,a white horse,a yellow bus,three birds,a wooden chair,a black cat,a pink flower,a big house,"
           "a silver spoon]")
SWEEP = ["experiment=tiny_table1_pixart", "method=dense,skrr", "sparsity=[0.3]", "eval.metrics=[clip,dreamsim]",
         f"eval.prompts.text={PROMPTS}", "progress=false", "calibration.size=4"]
ADAPTIVE = ["eval.budget=adaptive", "eval.adaptive.fractions=[0.25,0.5,1.0]", "eval.adaptive.min_items=8"]


def _skrr_run(args, root: Path, **kw):
    return subprocess.run([sys.executable, "-m", "skrr.experiments.cli.run", "-m", *args, f"paths.root={root}"],
                          env=ENV, capture_output=True, text=True, timeout=900, **kw)


def _images(root: Path) -> dict[str, tuple[int, int]]:
    """Every PNG of the store: (inode, mtime_ns), to see that nothing was made again."""
    return {str(p.relative_to(root)): (p.stat().st_ino, p.stat().st_mtime_ns) for p in (root / "images").rglob("*.png")}


def _by_row(rows):
    return {id_of(r): (r["run_key"], r["metrics"]) for r in rows}


def test_the_driver_resumes_after_a_kill_and_equals_straight_runs(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    # a driver killed once its first round is decided, then run again
    proc = subprocess.Popen([sys.executable, "-m", "skrr.experiments.cli.run", "-m", *SWEEP, *ADAPTIVE,
                             f"paths.root={killed}"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    ledger = ledger_path(killed, "tiny_table1_pixart")
    deadline = time.time() + 600
    while not ledger.is_file() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert json.loads(ledger.read_text())["rounds"] == [0.25]
    before = _images(killed)
    done = _skrr_run([*SWEEP, *ADAPTIVE], killed)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "adaptive:" in done.stdout and "images (" in done.stdout
    after = _images(killed)
    assert all(after[name] == stamp for name, stamp in before.items())  # not one image made again
    # an uninterrupted driver elsewhere gives the same rows
    straight = _skrr_run([*SWEEP, *ADAPTIVE], clean)
    assert straight.returncode == 0, straight.stderr[-2000:]
    rows = load_results(results_path(killed, "tiny_table1_pixart-adaptive"))
    assert _by_row(rows) == _by_row(load_results(results_path(clean, "tiny_table1_pixart-adaptive")))
    decided = json.loads(ledger.read_text())
    assert decided["rounds"][0] == 0.25 and len(rows) == 2
    assert not any(c["fraction"] == 0.25 for c in decided["comparisons"])  # 4 images < min_items: round 1 settles nothing
    # the pruned row equals a straight run at its stopping share, in a fresh store
    (row,) = [r for r in rows if r["method"] == "skrr"]
    share = row["budget"]["fraction"]
    run = _skrr_run([*SWEEP, f"eval.fraction={share}"], tmp_path / "fixed")
    assert run.returncode == 0, run.stderr[-2000:]
    name = "tiny_table1_pixart" if share == 1 else f"tiny_table1_pixart-f{share:g}"
    alone = {r["method"]: r for r in load_results(results_path(tmp_path / "fixed", name))}["skrr"]
    assert (alone["run_key"], alone["metrics"]) == (row["run_key"], row["metrics"])
    # the full budget later reuses every image the adaptive run made, and makes only the rest
    full = _skrr_run(SWEEP, killed)
    assert full.returncode == 0, full.stderr[-2000:]
    extended = _images(killed)
    assert all(extended[name] == stamp for name, stamp in after.items())
    assert len(extended) > len(after) or all(r["budget"]["fraction"] == 1 for r in rows)


def test_adaptive_needs_a_sweep_and_leaves_the_share_to_itself(tmp_path):
    one = subprocess.run([sys.executable, "-m", "skrr.experiments.cli.run", "eval.budget=adaptive",
                          f"paths.root={tmp_path}"], env=ENV, capture_output=True, text=True, timeout=300)
    assert one.returncode == 2 and "needs a sweep" in one.stderr
    both = _skrr_run(["eval.budget=adaptive", "eval.fraction=0.5"], tmp_path)
    assert both.returncode == 2 and "eval.fraction is set per round" in both.stderr
    bad = _skrr_run(["eval.fraction=0"], tmp_path)
    assert bad.returncode == 2 and "eval.fraction must be a number in (0, 1]" in bad.stderr
    assert not (tmp_path / "images").exists()
