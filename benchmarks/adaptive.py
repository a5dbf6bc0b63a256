"""Does the adaptive budget reach the full budget's conclusions, and with what share of the images?

    skrr-run -m experiment=toyworld_full                          # the full budget
    skrr-run -m experiment=toyworld_full eval.budget=adaptive     # the adaptive run (reuses its images)
    .venv/bin/python benchmarks/adaptive.py runs toyworld_full

For every comparison the adaptive run settled (its ledger, results/<experiment>-adaptive/decisions.json)
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

from skrr.experiments.report.claims import claims
from skrr.experiments.report.compare import Point, difference, is_dense
from skrr.experiments.report.tables import latest
from skrr.experiments.runner.adaptive import DEFAULT_MARGINS, id_of, images_used, load_ledger
from skrr.experiments.runner.results import load_results, results_path


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


def agreement(c: dict, full: str, value: float, margins: dict) -> str:
    if c["verdict"] in ("within margin", "undecided"):
        if full == "no difference":
            return "agree (no difference)"
        return "agree (difference below the margin)" if abs(value) < margins[c["metric"]] else "DISAGREE"
    return "agree (same winner)" if c["verdict"] == full else "DISAGREE"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path, help="the runs root (paths.root)")
    ap.add_argument("experiment")
    args = ap.parse_args(argv)
    ledger = load_ledger(args.root, args.experiment)
    if not ledger["rounds"]:
        sys.exit(f"error: no adaptive run of {args.experiment} under {args.root}")
    compared = full_verdicts(args.root, args.experiment, ledger)
    margins = DEFAULT_MARGINS
    kinds = Counter(agreement(c, full, value, margins) for c, full, value in compared)
    used, full = images_used(args.root, args.experiment)
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
    claimed = [[line.split("\n")[0] for line in claims(latest(load_results(results_path(args.root, name))))]
               for name in (args.experiment, f"{args.experiment}-adaptive")]
    for f, a in zip(*claimed):
        print(f"- full budget: {f}\n  adaptive:    {a}")


if __name__ == "__main__":
    main()
