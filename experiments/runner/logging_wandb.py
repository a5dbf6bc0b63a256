"""W&B logging of one stored result row: config, scalar metrics, the D-per-depth curve, and a
table of sample images (prompt, dense image, pruned image).

Called after the row is in the results store, and every error is caught and warned: W&B can
never lose local results. Offline by default (logger.mode), so it needs no account.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


def scalars(metrics: dict, prefix: str = "") -> dict:
    """Flatten nested metric dicts ({'geneval': {'counting': .5}} -> {'geneval/counting': .5}) to numbers;
    a value with its interval ({'value': v, 'ci': [lo, hi]}) logs as k, k/ci_lo and k/ci_hi."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, dict) and "value" in v and "ci" in v:
            out[f"{prefix}{k}"] = v["value"]
            out.update({f"{prefix}{k}/ci_lo": v["ci"][0], f"{prefix}{k}/ci_hi": v["ci"][1]})
        elif isinstance(v, dict):
            out.update(scalars(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[f"{prefix}{k}"] = v
    return out


def sample_pairs(row: dict, prompts: list | None, n: int) -> list[tuple[str, Path | None, Path]]:
    """(prompt, dense image, pruned image) for the first n prompt indices that have a pruned image."""
    pruned_dir = Path(row["artifacts"]["images"]) / "text"
    dense_dir = Path(row["artifacts"]["dense_images"]) / "text"
    pairs = []
    for i, prompt in enumerate((prompts or [])[:n]):
        pruned = pruned_dir / f"{i:05d}.png"
        if pruned.is_file():
            dense = dense_dir / f"{i:05d}.png"
            pairs.append((prompt, dense if dense.is_file() else None, pruned))
    return pairs


def run_name(row: dict) -> str:
    return f"{row['model']}-{row['method']}-{row['target']:.2f}-{row['run_key'][:6]}"


def log_run(logger_cfg: DictConfig | dict, row: dict, prompts: list | None = None) -> bool:
    """Log one result row as one W&B run. Returns False (with a warning) if anything failed."""
    cfg = OmegaConf.create(logger_cfg) if isinstance(logger_cfg, dict) else logger_cfg
    try:
        import wandb

        os.makedirs(cfg.dir, exist_ok=True)
        run = wandb.init(project=cfg.project, entity=cfg.get("entity"), mode=cfg.get("mode", "offline"),
                         dir=str(cfg.dir), group=cfg.get("group") or f"{row['experiment']}-{row['model']}",
                         name=run_name(row), config=row["config"], tags=list(cfg.get("tags") or []),
                         job_type=row["method"], reinit="finish_previous")
        try:
            for depth, d in enumerate(row["plan"].get("depth_d") or [], 1):
                run.log({"search/depth": depth, "search/D": d})
            summary = {"sparsity": row["sparsity"], "target": row["target"], **scalars(row["metrics"], "metrics/"),
                       **scalars(row["timings"], "seconds/")}
            run.log(summary)
            run.summary.update(summary)
            pairs = sample_pairs(row, prompts, int(cfg.get("num_samples", 8)))
            if pairs:
                table = wandb.Table(columns=["prompt", "dense", "pruned"])
                for prompt, dense, pruned in pairs:
                    table.add_data(prompt, wandb.Image(str(dense)) if dense else None, wandb.Image(str(pruned)))
                run.log({"samples": table})
        finally:
            run.finish()
        return True
    except Exception as e:  # noqa: BLE001 - logging must never cost the results
        warnings.warn(f"W&B logging failed ({type(e).__name__}: {e}); the results store has the run", stacklevel=2)
        return False


def log_grids(logger_cfg: dict, drawn: dict, name: str) -> bool:
    """Log skrr-report's grids as one W&B run: each grid as an image and as a table (prompt, task,
    then one image with its caption per column). Returns False (with a warning) if anything failed."""
    cfg = OmegaConf.create(logger_cfg) if isinstance(logger_cfg, dict) else logger_cfg
    try:
        import numpy as np
        import wandb

        os.makedirs(cfg.dir, exist_ok=True)
        run = wandb.init(project=cfg.project, entity=cfg.get("entity"), mode=cfg.get("mode", "offline"),
                         dir=str(cfg.dir), name=f"{name}-grids", job_type="report", reinit="finish_previous")
        try:
            for grid, (path, rows) in drawn.items():
                titles = [cell[0] for cell in rows[0][2:]]
                table = wandb.Table(columns=["prompt", "task", *titles])
                for prompt, task, *cells in rows:
                    table.add_data(prompt, task, *[None if image is None else
                                                   wandb.Image(np.asarray(image), caption=text)
                                                   for _, image, text in cells])
                run.log({f"{grid}/image": wandb.Image(str(path)), f"{grid}/table": table})
        finally:
            run.finish()
        return True
    except Exception as e:  # noqa: BLE001 - logging must never cost the report
        warnings.warn(f"W&B logging of the grids failed ({type(e).__name__}: {e}); the PNGs are written",
                      stacklevel=2)
        return False
