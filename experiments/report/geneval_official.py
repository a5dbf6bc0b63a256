"""The official GenEval round trip for a run's row (the formats are `eval/geneval/official.py`'s).

    python -m skrr.experiments.report.geneval_official export --results runs/results/adhoc.jsonl --run-key KEY --out geneval_dir
    # elsewhere: python evaluation/evaluate_images.py geneval_dir --outfile results.jsonl --model-path ...
    python -m skrr.experiments.report.geneval_official import --results runs/results/adhoc.jsonl --run-key KEY --official results.jsonl

`import` writes `metrics.geneval_official` (and `geneval_agreement`) into the row through the
results store's own locked rewrite (`skrr.experiments.runner.results.update_row`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from skrr.errors import InputError
from skrr.eval.geneval import official as O
from skrr.experiments.runner.results import find_row, update_row


def run_geneval_set(row: dict) -> tuple[list[Path], list[dict], int, object]:
    """A run's GenEval images, per-image metadata, images per prompt and its GenEval metric (as the run built it)."""
    from omegaconf import OmegaConf

    from skrr.eval.metrics import build_metric, load_folder
    from skrr.eval.prompts import prompt_sets

    config = row["config"]
    prompts = OmegaConf.create(config["eval"]["prompts"])
    metadata = prompt_sets(prompts).get("geneval")
    if metadata is None or "geneval" not in config.get("metrics", {}):
        raise InputError(f"run {row['run_key']} has no GenEval prompt set or metric")
    images = load_folder(Path(row["artifacts"]["images"]) / "geneval", len(metadata))
    metric = build_metric(OmegaConf.create(config["metrics"]["geneval"]), "geneval")
    return images, metadata, int(prompts.get("geneval_images_per_prompt", 4)), metric


def import_into_row(results: Path, run_key: str, official_path: Path, ours_path: Path | None = None) -> dict:
    """Write metrics.geneval_official (and geneval_agreement) into the row, atomically under the store's lock."""
    official = O.read_results(official_path)
    ours = O.read_results(ours_path) if ours_path is not None and Path(ours_path).is_file() else None
    summary = O.summarize_official(official)
    agree = O.agreement(official, ours) if ours is not None else None

    def add(row: dict) -> None:
        row["metrics"]["geneval_official"] = summary
        if agree is not None:
            row["geneval_agreement"] = agree

    update_row(results, run_key, add)
    return {"geneval_official": summary, "geneval_agreement": agree}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m skrr.experiments.report.geneval_official", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export", help="a run's GenEval images -> the official folder layout")
    e.add_argument("--results", required=True, type=Path, help="runs/results/<experiment>.jsonl")
    e.add_argument("--run-key", required=True)
    e.add_argument("--out", required=True, type=Path)
    e.add_argument("--no-ours", action="store_true", help="skip scoring with this project's detector")
    i = sub.add_parser("import", help="official results.jsonl -> the run's row (geneval_official, agreement)")
    i.add_argument("--results", required=True, type=Path)
    i.add_argument("--run-key", required=True)
    i.add_argument("--official", required=True, type=Path, help="results.jsonl of evaluation/evaluate_images.py")
    i.add_argument("--ours", type=Path, default=None, help=f"default: {O.OURS} beside the official file, if any")
    args = p.parse_args(argv)
    try:
        if args.cmd == "export":
            row = find_row(args.results, args.run_key)
            images, metadata, n, metric = run_geneval_set(row)
            out = O.export_official(images, metadata, n, args.out)
            if not args.no_ours:
                rows = O.score_ours(images, metadata, metric, n)
                (out / O.OURS).write_text("".join(json.dumps(r) + "\n" for r in rows))
            print(f"exported {len(images)} images of {len(images) // n} prompts to {out}")
        else:
            ours = args.ours or args.official.parent / O.OURS
            out = import_into_row(args.results, args.run_key, args.official, ours)
            s = out["geneval_official"]
            print("geneval_official: " + " ".join(f"{k}={v:.4f}" for k, v in s.items() if isinstance(v, float)))
            for tag, a in (out["geneval_agreement"] or {}).items():
                print(f"agreement {tag}: {a['agreement']:.3f} over {a['images']} images")
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
