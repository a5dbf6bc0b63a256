"""Does the adaptive budget reach the full budget's conclusions, and with what share of the images?

    skrr-run -m experiment=toyworld_full                          # the full budget
    skrr-run -m experiment=toyworld_full eval.budget=adaptive     # the adaptive run (reuses its images)
    .venv/bin/python benchmarks/adaptive.py runs toyworld_full
    .venv/bin/python benchmarks/adaptive.py runs toyworld_full --replay /tmp/replay --futility 0.05

`--replay DIR` needs only the full budget: it replays the adaptive rounds from the full rows' per-image
scores cut to each round's share (the same chunks the adaptive run generates), deciding into DIR;
with metrics that score each image on its own (the toy world's) that is the adaptive run's decisions,
so settings can be compared in seconds. For every comparison the adaptive run settled (its ledger, results/<experiment>-adaptive/decisions.json)
it computes the same paired comparison on the full-budget rows (95%, all images) and sets the two
verdicts side by side: the same winner, "within margin" where the full budget finds no difference
or one smaller than the margin, or a disagreement. Then the paper's claims (a)-(d) as the report
states them from each results file, and the images used against the full budget's.
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from skrr.eval.generate import chunks_for, share
from skrr.eval.per_item import Items
from skrr.experiments.report.claims import claims
from skrr.experiments.report.compare import Point, difference, is_dense
from skrr.experiments.report.tables import latest
from skrr.experiments.runner.adaptive import (
    DEFAULT_MARGINS,
    Adaptive,
    decide,
    id_of,
    images_used,
    load_ledger,
    round_name,
)
from skrr.experiments.runner.results import append_result, load_results, results_path

SET_OF = {"geneval": "geneval", "geneval2": "geneval2"}  # every other metric scores the text set


def full_verdicts(root: Path, experiment: str, ledger: dict) -> list[tuple[dict, str, float]]:
    """(ledger comparison, the full budget's verdict, its value) for every settled comparison."""
    rows = {id_of(r): r for r in load_results(results_path(root, experiment))}
    label_of = {k: e["row"]["label"] for k, e in ledger["rows"].items()}
    by_label = {(label_of[k], round(r["target"], 4)): r for k, r in rows.items() if k in label_of}
    dense = next(r for r in rows.values() if is_dense(r, noise_floor=False))
    out = []
    for c in ledger["comparisons"]:
        ra = by_label[c["a"], c["target"]]
        rb = dense if c["b"] == label_of[id_of(dense)] else by_label[c["b"], c["target"]]
        d = difference(Point(c["a"], c["target"], ra["sparsity"], "at", [(ra, 1.0)]),
                       Point(c["b"], c["target"], rb["sparsity"], "at", [(rb, 1.0)]), c["metric"])
        out.append((c, (d.winner() or "no difference") if d.beyond_noise is not None else "no interval", d.value))
    return out


def share_row(row: dict, fraction: float, out: Path) -> dict:
    """The row as a round at `fraction` would give it: each metric's per-image scores cut to the share."""
    batch, base = int(row["sampler"]["batch_size"]), int(row["sampler"]["base_seed"])
    items, images, of, sets = {}, {}, {}, {}
    for metric, path in row["artifacts"]["items"].items():
        full = Items.load(path)
        n = len(full.keys)
        keep = set(share(0, 1, n, batch, chunks_for(fraction, n, batch)))  # None: every chunk
        rows = np.array([i for i, k in enumerate(full.keys) if int(k.split("|")[0]) - base in keep])
        cut = Items(full.kind, full.keys[rows], full.values[rows], full.clusters[rows],
                    None if full.strata is None else full.strata[rows], full.reference)
        items[metric] = str(cut.save(out / "items" / id_of(row) / f"{metric}-{fraction:g}.npz"))
        set_name = SET_OF.get(metric, "text")
        images[set_name], of[set_name], sets[metric] = len(rows), n, set_name
    return {**row, "run_key": f"{row['run_key']}@{fraction:g}", "artifacts": {**row["artifacts"], "items": items},
            "budget": {"mode": "adaptive", "fraction": fraction, "images": images, "of": of, "sets": sets}}


def table1_rows(rows: list[dict]) -> list[dict]:
    """Dense and each method at its default settings (conf/method/<name>.yaml): a Table 1 without ablations."""
    from skrr.experiments.report.claims import _settings, default_settings

    return [r for r in rows if r["method"] == "dense" or
            all(_settings(r).get(k) == v for k, v in default_settings(r["method"]).items() if k in _settings(r))]


def replay(root: Path, experiment: str, settings: Adaptive, out: Path, table1: bool = False) -> None:
    """The adaptive rounds, decided from the full budget's per-image scores (into `out`)."""
    rows = load_results(results_path(root, experiment))
    rows = {id_of(r): r for r in (table1_rows(rows) if table1 else rows)}
    for fraction in settings.fractions:
        stopped = {k for k, e in load_ledger(out, experiment)["rows"].items() if e["stopped_at"] is not None}
        for key, row in rows.items():
            if key not in stopped:
                append_result(results_path(out, round_name(experiment, fraction)), share_row(row, fraction, out))
        decide(out, experiment, fraction, settings)


def agreement(c: dict, full: str, value: float, margins: dict) -> str:
    if c["verdict"] in ("within margin", "undecided", "undecidable"):
        if full == "no difference":
            return "agree (no difference)"
        return "agree (difference below the margin)" if abs(value) < margins[c["metric"]] else "DISAGREE"
    return "agree (same winner)" if c["verdict"] == full else "DISAGREE"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the runs root (paths.root)")
    ap.add_argument("experiment")
    ap.add_argument("--replay", type=Path, help="decide from the full rows' per-image scores into this (new) folder")
    ap.add_argument("--futility", type=float, default=None, help="eval.adaptive.futility for the replay")
    ap.add_argument("--fractions", type=float, nargs="+", default=None, help="eval.adaptive.fractions for the replay")
    ap.add_argument("--metrics", nargs="+", default=None, help="eval.adaptive.metrics for the replay")
    ap.add_argument("--margin", nargs="+", default=[], metavar="METRIC=VALUE", help="eval.adaptive.margins for the replay")
    ap.add_argument("--interim-level", type=float, default=None, help="eval.adaptive.interim_level for the replay")
    ap.add_argument("--table1", action="store_true", help="replay only dense and each method at its defaults")
    args = ap.parse_args(argv)
    decided = args.root
    if args.replay:
        if args.replay.exists():
            sys.exit(f"error: {args.replay} exists; the replay writes a new folder")
        node = {k: v for k, v in (("futility", args.futility), ("fractions", args.fractions), ("metrics", args.metrics),
                                  ("interim_level", args.interim_level)) if v is not None}
        node["margins"] = {m.partition("=")[0]: float(m.partition("=")[2]) for m in args.margin}
        replay(args.root, args.experiment, Adaptive.from_config(node), args.replay, args.table1)
        decided = args.replay
    ledger = load_ledger(decided, args.experiment)
    if not ledger["rounds"]:
        sys.exit(f"error: no adaptive run of {args.experiment} under {args.root}")
    compared = full_verdicts(args.root, args.experiment, ledger)
    margins = {**DEFAULT_MARGINS, **{m.partition("=")[0]: float(m.partition("=")[2]) for m in args.margin}}
    kinds = Counter(agreement(c, full, value, margins) for c, full, value in compared)
    used, full = images_used(decided, args.experiment)
    print(f"## {args.experiment}: adaptive ({len(ledger['rounds'])} rounds, shares {ledger['rounds']}) vs full budget\n")
    print(f"images: {used} of {full} ({used / full:.1%} of the full budget)")
    stops = Counter(e["stopped_at"] for e in ledger["rows"].values())
    print("rows stopped per share: " + ", ".join(f"{f:g}: {n}" for f, n in sorted(stops.items())))
    print(f"\n{len(compared)} comparisons: " + "; ".join(f"{k}: {n}" for k, n in kinds.most_common()))
    print("\n| comparison | target | metric | adaptive (share) | full budget (value) |\n|---|---|---|---|---|")
    for c, verdict, value in compared:
        flag = " **disagree**" if agreement(c, verdict, value, margins) == "DISAGREE" else ""
        print(f"| {c['a']} − {c['b']} | {c['target']:.0%} | {c['metric']} | {c['verdict']} ({c['fraction']:g}) | "
              f"{verdict} ({value:+.3g}){flag} |")
    print("\n## claims (a)-(d)\n")
    claimed = [[line.split("\n")[0] for line in claims(latest(load_results(results_path(where, name))))]
               for where, name in ((args.root, args.experiment), (decided, f"{args.experiment}-adaptive"))]
    for f, a in zip(*claimed):
        print(f"- full budget: {f}\n  adaptive:    {a}")


if __name__ == "__main__":
    main()
