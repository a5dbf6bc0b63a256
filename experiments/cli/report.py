"""skrr-report: paper tables (Markdown + LaTeX) and plots (PNG) from a results store. Its arguments are
checked before the report's libraries (numpy, torch) load."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skrr.errors import InputError


def main(argv=None):
    parser = argparse.ArgumentParser(description="paper tables and plots from a skrr results store")
    parser.add_argument("results", help="results file, e.g. runs/results/table1_pixart.jsonl")
    parser.add_argument("--out", default=None, help="output folder (default: <root>/reports/<experiment>)")
    parser.add_argument("--grid-method", default="skrr", help="the method grid.png shows across its sparsities")
    parser.add_argument("--grid-prompts", type=int, default=6, help="rows of each grid (prompts)")
    parser.add_argument("--grid-seed", type=int, default=0, help="seed of the prompt choice")
    parser.add_argument("--wandb", action="store_true", help="also log the grids to W&B (images and tables)")
    parser.add_argument("--wandb-mode", default="offline", choices=("offline", "online", "disabled"))
    parser.add_argument("--wandb-project", default="skrr")
    parser.add_argument("--wandb-dir", default=None, help="default: <root>/wandb")
    args = parser.parse_args(argv)
    if args.grid_prompts < 1:
        parser.error(f"--grid-prompts must be >= 1, got {args.grid_prompts}")
    if not Path(args.results).is_file():
        print(f"error: no results file at {args.results}; run a sweep first (skrr-run -m experiment=...)", file=sys.stderr)
        sys.exit(2)
    from skrr.experiments.report.tables import report  # the report's libraries, once the arguments are checked

    wandb = None
    if args.wandb:
        root = Path(args.results).parent.parent
        wandb = {"project": args.wandb_project, "mode": args.wandb_mode, "dir": args.wandb_dir or str(root / "wandb")}
    try:
        report(args.results, args.out, args.grid_method, args.grid_prompts, args.grid_seed, wandb)
    except InputError as e:  # anything else is a bug: its traceback stays
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
