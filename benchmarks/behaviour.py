"""What a refactor must not change: plans, D, result rows and reports, through the user's commands.

    .venv/bin/python benchmarks/behaviour.py --save before.json          # record (about 15 min on 2 cores)
    .venv/bin/python benchmarks/behaviour.py --against before.json       # run again and compare
    .venv/bin/python benchmarks/behaviour.py --only prune --save p.json  # plans only (a few minutes)

It runs `skrr-prune` for every method on the tiny twins and the toy world, the tiny Table 1 sweep and
the demo (`skrr-run -m ...` then `skrr-report`) into a scratch root, and keeps what users compare:
each plan's decisions (skip, re-use, sparsity, merged weights' hash) and every number in `plan.info`
(D per depth, margins), each row's metrics, sparsity and D, and the report's tables. Cache keys,
paths, timings and provenance are left out: they may change with the code, the answers may not.
Same machine, same kernels: the comparison is exact (a different CPU is docs/exactness.md's job).
"""
from __future__ import annotations

import argparse
import glob
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from skrr.config.legacy import key_names

BIN = Path(sys.executable).parent
PRUNES = {  # model -> methods (each with its overrides); two targets each, one search serves both
    "tiny_pixart": ["skrr", "skrr method.beam_width=1 method.reuse=false", "shortgpt", "laco", "finercut",
                    "finercut method.reuse=true", "dense", "skrr method.projection=false method.null_term=false"],
    "tiny_sd3": ["skrr", "shortgpt", "laco"],
    "tiny_flux": ["skrr", "finercut"],
    "toyworld_v2": ["skrr", "shortgpt method.reuse=true"],
    # a saved plan's order cut per target (paper: presets need the real T5-XXL; tests cover them);
    # the file is found by a glob: its name's format is the code's, not the answer's
    "tiny_sd3 ": ["preset method.plan={tiny_sd3 skrr}/plan_0.4*.json"],
}
# cases named differently by answers saved before plan files took four decimals (plan_0.4000.json)
RENAMED = {"tiny_sd3 preset method.plan={tiny_sd3 skrr}/plan_0.400.json":
           "tiny_sd3 preset method.plan={tiny_sd3 skrr}/plan_0.4*.json"}
SWEEPS = {  # experiment -> overrides
    "tiny_table1_pixart": [],
    "demo": [],
}
VOLATILE = {"machine", "calibration_seconds", "seconds", "source"}  # where, how long and from which path, not what


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "TOKENIZERS_PARALLELISM": "false"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done.stdout


def plan_answer(path: Path) -> dict:
    plan = json.loads(path.read_text())
    info = {k: v for k, v in plan.get("info", {}).items() if k not in VOLATILE}
    weights = plan.get("weights")
    digest = hashlib.sha256((path.parent / weights).read_bytes()).hexdigest()[:16] if weights else None
    return {"skip": plan["skip"], "reuse": plan.get("reuse"), "sparsity": plan.get("sparsity"),
            "weights": digest, "info": info}


def one_file(override: str) -> str:
    """`key=<glob>` -> `key=<the one file it matches>`; other overrides as they are."""
    key, sep, pattern = override.partition("=")
    if "*" not in pattern:
        return override
    matches = sorted(glob.glob(pattern))
    if len(matches) != 1:
        raise SystemExit(f"{override}: {len(matches)} files match, expected one: {matches}")
    return f"{key}{sep}{matches[0]}"


def by_target(plans: dict) -> dict:
    """A run's plan answers keyed by their sparsity target (read from the plan), not by file name,
    without what VOLATILE names (answers saved by an older version may still hold it)."""
    return {f"target {answer['info'].get('target')}":
            {**answer, "info": {k: v for k, v in answer["info"].items() if k not in VOLATILE}}
            for answer in plans.values()}


def prune_answers(root: Path) -> dict:
    out, dirs = {}, {}
    for model, methods in PRUNES.items():
        model = model.strip()
        for spec in methods:
            name, *overrides = [one_file(o) for o in spec.format_map(dirs).split()]
            run_dir = dirs[f"{model} {spec}"] = root / "prune" / hashlib.sha256(f"{model} {spec}".encode()).hexdigest()[:12]
            sparsity = "[0.0]" if name == "dense" else "[0.2,0.4]"
            calib = ["calibration=toyworld", "calibration.size=16"] if model.startswith("toyworld") else \
                ["calibration.size=8"]
            run([str(BIN / "skrr-prune"), f"model={model}", f"method={name}", *overrides,
                 f"method.sparsity={sparsity}", *calib, "progress=false", f"paths.root={root}",
                 f"hydra.run.dir={run_dir}"], root)
            out[f"{model} {spec}"] = by_target({p.name: plan_answer(p) for p in sorted(run_dir.glob("plan*.json"))})
            print(f"pruned {model} {spec}", flush=True)
    return out


def row_answer(row: dict) -> dict:
    plan = row.get("plan", {})
    return {"method": row["method"], "model": row["model"], "target": row["target"], "sparsity": row["sparsity"],
            "seed_offset": row.get("seed_offset"), "metrics": row["metrics"], "skip": plan.get("skip"),
            "reuse": plan.get("reuse"), "d_final": plan.get("d_final"),
            "discrepancy": (row.get("discrepancy") or {}).get("value"),
            "settings": {k: v for k, v in row["config"]["method"].items() if k != "_target_"}}


def sweep_answers(root: Path) -> dict:
    out = {}
    for experiment, overrides in SWEEPS.items():
        sweep_root = root / experiment
        run([str(BIN / "skrr-run"), "-m", f"experiment={experiment}", *overrides, "progress=false",
             f"paths.root={sweep_root}"], root)
        results = sweep_root / "results" / f"{experiment}.jsonl"
        rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
        rows = sorted((row_answer(r) for r in rows), key=lambda r: json.dumps(r, sort_keys=True))
        report_dir = sweep_root / "report"
        run([str(BIN / "skrr-report"), str(results), "--out", str(report_dir)], root)
        tables = {p.name: p.read_text() for p in sorted(report_dir.glob("*.md"))}
        out[experiment] = {"rows": rows, "report": tables}
        print(f"ran {experiment}: {len(rows)} rows, {len(tables)} report tables", flush=True)
    return out


def differences(a, b, where="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}/{k}: only {'before' if k in a else 'after'}" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {json.dumps(a)[:200]} -> {json.dumps(b)[:200]}"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--save", help="write the answers here")
    p.add_argument("--against", help="compare with answers saved earlier; exit 1 on any difference")
    p.add_argument("--only", choices=("prune", "sweeps"), help="one half only")
    p.add_argument("--root", help="scratch root (default: a temporary folder)")
    args = p.parse_args(argv)
    root = Path(args.root or tempfile.mkdtemp(prefix="skrr_behaviour_"))
    root.mkdir(parents=True, exist_ok=True)
    answers = {}
    if args.only in (None, "prune"):
        answers["prune"] = prune_answers(root)
    if args.only in (None, "sweeps"):
        answers["sweeps"] = sweep_answers(root)
    if args.save:
        Path(args.save).write_text(json.dumps(answers, indent=1, sort_keys=True))
    if args.against:
        before = json.loads(Path(args.against).read_text())
        before = {k: v for k, v in before.items() if k in answers}
        if "prune" in before:  # compare plans by target and content (older saves keyed them by file name)
            before["prune"] = {RENAMED.get(case, case): by_target(plans) for case, plans in before["prune"].items()}
        # module names moved into sub-packages by design (skrr.config.legacy): compare under the old ones
        diff = differences(before, key_names(answers))
        for line in diff[:60]:
            print(line)
        print(f"{len(diff)} differences" if diff else "identical: every plan, D, row and report table")
        sys.exit(1 if diff else 0)


if __name__ == "__main__":
    main()
