"""skrr-run: plan -> images -> metrics -> results row, for one composed config.

    skrr-run model=tiny_pixart method=skrr sparsity=[0.2,0.4] eval=smoke
    skrr-run -m experiment=table1_pixart model=tiny_pixart eval=smoke

A job prunes once for all its sparsity targets (one Skrr search serves every target) and then,
per target, generates and scores images and appends one row to `<paths.root>/results/<experiment>.jsonl`.
Every step is a stage of experiments/runner/stages.py, keyed by its inputs: the dense images are keyed
without the method, so every run of a sweep shares them, and a re-run does only what is missing.
Under torchrun every rank generates its shard of each image set; rank 0 scores and stores.
"""
from __future__ import annotations

import logging
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from skrr.errors import InputError
from skrr.eval.prompts import texts_of
from skrr.experiments.cli.app import CONF_DIR, check_command_line, fail_fast
from skrr.experiments.runner.adaptive import ROUND_ENV
from skrr.experiments.runner.job import Job
from skrr.experiments.runner.results import append_result, results_path
from skrr.experiments.runner.stages import DENSE, Images, Pipeline, PlanD, Plans, Score, digest, plain, plan_identity

log = logging.getLogger("skrr-run")


def provenance() -> dict:
    import diffusers
    import torch
    import transformers

    import skrr

    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        dirty = bool(subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                         "diffusers": diffusers.__version__, "skrr": skrr.__version__},
            "git_commit": commit, "git_dirty": dirty}


def peak_memory(device: str) -> dict:
    import torch

    cuda = torch.cuda.max_memory_allocated() if str(device).startswith("cuda") and torch.cuda.is_available() else None
    return {"cuda_max_allocated_bytes": cuda,
            "cpu_max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}


def plan_summary(plan, plan_dir: Path) -> dict:
    keep = ("target", "depth_d", "d_skip", "d_final", "order", "candidates_scored", "near_ties", "compute_dtype", "machine")
    return {"skip": plan.skip, "reuse": {str(k): v for k, v in plan.reuse.items()}, "weights": plan.weights,
            "num_sub_blocks": (plan.encoder or {}).get("num_sub_blocks"), "path": str(plan_dir),
            **{k: plan.info[k] for k in keep if k in plan.info}}


def discrepancy(plan_d: dict | None, target: float, identity: dict, calibration) -> dict | None:
    """The row's D on Skrr's default yardstick (skrr.experiments.runner.plan_d) and what it was computed with."""
    from skrr.experiments.runner.plan_d import SETTINGS

    if identity == DENSE:
        value = 0.0
    elif plan_d is None:
        return None
    else:
        value = plan_d["output"]["d"][f"{target:.4f}"]
    return {"value": value, **{k: SETTINGS[k] for k in ("metric", "projection", "null_term")},
            "calibration": plain(calibration)}


def run_job(cfg: DictConfig, experiment: str = "adhoc") -> list[dict]:
    """Run (or resume) one job: plan -> images -> scores -> row, for each sparsity target. The dense
    job with eval.noise_floor=true scores a second image set on disjoint seeds (`Job.noise_floor`),
    its rows marked seed_offset."""
    job = Job.build(cfg, experiment)  # every check, before anything loads
    if job.budget == "adaptive" and not os.environ.get(ROUND_ENV):
        raise InputError("eval.budget=adaptive needs a sweep (skrr-run -m ...): its rows stop when their "
                         "comparisons with the sweep's other rows are decided")
    plans = make_plans(job)  # one search serves every target
    rows = score_plans(job, plans)
    floor = job.noise_floor()
    if floor is not None:
        rows += score_plans(floor, plans)
    return rows


@dataclass(frozen=True)
class JobPlans:
    key: str
    record: dict  # the plans stage's
    files: list[tuple[float, Path]]  # (target, plan file)
    d: dict | None  # the PlanD stage's: every plan's D on Skrr's default yardstick (None: dense, or not rank 0)


def make_plans(job: Job) -> JobPlans:
    plans = Plans(job.model, job.method, job.method_config, job.calibration, job.targets)
    record = plans.run(job.store, job.prune_device, job.progress)
    files = Plans.files(job.store, plans.key, record)
    d = PlanD(job.model, job.calibration, plans.key).run(job.store, files, job.prune_device) \
        if job.plan_d and job.rank == 0 else None
    return JobPlans(plans.key, record, files, d)


def score_plans(job: Job, plans: JobPlans) -> list[dict]:
    """Every target's images, scores and row; the dense pipeline and images are shared by all."""
    from skrr.plan import Plan

    dense = Pipeline(job.model, job.device, job.dtype)
    rows = []
    for target, path in plans.files:
        if job.budget == "adaptive" and stopped(job, target):
            continue
        plan = Plan.load(path)
        images = make_images(job, plan, path.parent, dense)
        if job.rank == 0:  # the other ranks only help generate
            rows.append(store_row(job, plans, target, plan, path, images, make_scores(job, images)))
        if images.pipe is not dense:
            images.pipe.release()
    return rows


def stopped(job: Job, target: float) -> bool:
    """Whether an earlier adaptive round stopped this row (it is then neither generated nor scored)."""
    from skrr.experiments.runner.adaptive import row_id, stopped_before

    key = row_id(job.model["name"], job.method.name, job.method_config, target, job.seed_offset)
    entry = stopped_before(job.store.root, job.experiment, key, job.fraction)
    if entry is not None:
        print(f"{job.model['name']} {job.method.name} target {target:.2%}: stopped at {entry['stopped_at']:g} "
              f"of the prompts ({entry['why']})")
    return entry is not None


@dataclass
class PlanImages:
    identity: dict  # what the images depend on (skrr.experiments.runner.stages.plan_identity)
    pipe: Pipeline
    images: Images
    dense: Images  # the dense model's, for metrics that compare with them
    records: dict  # stage records, for the row's timings and `ran`


def make_images(job: Job, plan, plan_dir: Path, dense_pipe: Pipeline) -> PlanImages:
    """The plan's images of every prompt set the metrics read (of each, the share `eval.fraction`
    takes; under torchrun each rank makes its shard), and the dense images where a metric compares
    with them."""
    import torch

    if str(job.device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    identity = plan_identity(plan, plan_dir)
    pipe = dense_pipe if identity == DENSE else Pipeline(job.model, job.device, job.dtype, plan, plan_dir)
    out = PlanImages(identity, pipe, Images(job.model, identity, job.sampler, job.dtype, job.sets),
                     Images(job.model, DENSE, job.sampler, job.dtype, job.sets), {})
    classes = metric_classes(job)
    if any(cls.needs_dense(job.metrics[m]) for m, cls in classes.items()):  # shared by every run of the sweep
        out.records["dense_images"] = out.dense.run(job.store, "text", dense_pipe, job.rank, job.world,
                                                    fraction=job.fraction)
        if pipe is not dense_pipe:
            dense_pipe.release()  # never hold two pipelines in GPU memory
    needed = sorted({c.prompt_set for c in classes.values() if c.prompt_set}, key=["text", "geneval", "geneval2"].index)
    for set_name in needed:
        # GenEval prompts identical to the text prompts (the toy world): the same images, linked
        same = set_name == "geneval" and "text" in needed and texts_of(job.sets["geneval"]) == job.sets["text"]
        twin = (out.images.folder(job.store, "text"), out.images.metadata(job.store, out.images.part("text", job.fraction))) \
            if same else None
        out.records[f"images/{set_name}"] = out.images.run(job.store, set_name, pipe, job.rank, job.world, twin=twin,
                                                           fraction=job.fraction)
    return out


def metric_classes(job: Job) -> dict:
    from skrr.eval.metrics import metric_class

    return {name: metric_class(config, name) for name, config in job.metrics.items()}


def make_scores(job: Job, images: PlanImages) -> dict[str, dict]:
    """{metric: its stage record}: each metric of the images it reads (of their share; efficiency: of the plan)."""
    records = {}
    for name, cls in metric_classes(job).items():
        config = job.metrics[name]
        if cls.prompt_set is None:  # reads no images: a function of the plan (efficiency)
            score = Score(name, config, {"plan": images.identity, "model": job.model, "sampler": job.sampler})
        else:
            part = images.images.part(cls.prompt_set, job.fraction)
            dense = images.dense.folder(job.store, "text") if cls.needs_dense(config) else None
            depends = {"images": images.images.key, "set": cls.prompt_set, "dense": images.dense.key if dense else None}
            prompts = job.sets[cls.prompt_set]
            if not part.whole:  # the whole set's key stays as it was: its stored scores are reused
                depends["chunks"] = part.chunks
                prompts = [prompts[i] for i in part.indices]
            score = Score(name, config, depends, images.images.folder(job.store, cls.prompt_set), tuple(prompts), dense,
                          None if part.whole else tuple(part.indices), images.images.metadata(job.store, part))
        records[name] = {**score.run(job.store, images.pipe), "key": score.key}
    return records


def budget(job: Job, images: PlanImages) -> dict | None:
    """How much of each prompt set the row's images cover (None: all of every set, the fixed budget)."""
    if job.fraction == 1 and job.budget == "full":
        return None
    read = {name: c.prompt_set for name, c in metric_classes(job).items() if c.prompt_set}
    parts = {s: images.images.part(s, job.fraction) for s in sorted(set(read.values()))}
    return {"mode": job.budget, "fraction": job.fraction, "images": {s: p.size for s, p in parts.items()},
            "of": {s: p.num_prompts for s, p in parts.items()}, "sets": read}


def store_row(job: Job, plans: JobPlans, target: float, plan, plan_path: Path, images: PlanImages,
              scores: dict[str, dict]) -> dict:
    """The result row: appended to results/<experiment>.jsonl (once per run key), then logged."""
    plan_dir = plan_path.parent
    records = {"plan": plans.record, **({"discrepancy": plans.d} if plans.d else {}), **images.records,
               **{f"metrics/{name}": rec for name, rec in scores.items()}}
    values = {name: rec["output"]["value"] for name, rec in scores.items()}
    items = {name: str(job.store.dir("metrics", rec["key"]) / rec["output"]["items"])
             for name, rec in scores.items() if rec["output"].get("items")}
    metric_keys = {name: rec["key"] for name, rec in scores.items()}
    row = {"run_key": digest("run", plans.key, target, images.images.key, metric_keys), "experiment": job.experiment,
           "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "method": job.method.name, "model": job.model["name"],
           "target": target, "sparsity": float(plan.sparsity or 0.0), "metrics": values,
           **({"seed_offset": job.seed_offset} if job.seed_offset else {}),
           **({"budget": share} if (share := budget(job, images)) else {}),
           "plan": plan_summary(plan, plan_dir), "sampler": job.sampler,
           "discrepancy": discrepancy(plans.d, target, images.identity, job.calibration),
           "timings": {k: r["seconds"] for k, r in records.items()},
           "ran": sorted(k for k, r in records.items() if r["ran"]),
           "peak_memory": peak_memory(job.device), **provenance(),
           "artifacts": {"plan": str(plan_path), "images": str(job.store.dir("images", images.images.key)),
                         "dense_images": str(job.store.dir("images", images.dense.key)), "items": items},
           "config": {**job.config, "target": target}}
    if job.save_encoder and images.identity != DENSE:
        row["artifacts"]["encoder"] = str(save_encoder(job.model, plan, plan_dir, row, job.store.root))
    if append_result(results_path(job.store.root, job.results_name), row):  # results first, then W&B
        log_row(job.logger, row, job.sets.get("text"))
    print(f"{job.model['name']} {job.method.name} target {target:.2%}: sparsity {row['sparsity']:.2%} "
          f"{_brief(values)} (ran: {', '.join(row['ran']) or 'nothing, all cached'})")
    return row


def save_encoder(model: dict, plan, plan_dir: Path, row: dict, root) -> Path:
    """The pruned encoder of this row as a shareable folder (`<root>/encoders/<run_key>`), its model
    card carrying the metrics this run measured."""
    from skrr import apply_plan, save_pruned
    from skrr.experiments.cli.prune import card_source
    from skrr.models import load_text_side

    encoder = load_text_side(OmegaConf.create(model), device="cpu").encoder
    apply_plan(encoder, plan, weights_dir=plan_dir)
    measured = {"experiment": row["experiment"], "run_key": row["run_key"], **row["metrics"]}
    return save_pruned(encoder, plan, Path(root) / "encoders" / row["run_key"],
                       source={**card_source(model), "metrics": measured})


def _brief(values: dict) -> str:
    out = []
    for k, v in values.items():
        if isinstance(v, dict):
            v = v.get("overall", v.get("tflops", v.get("value")))
        if isinstance(v, dict):  # GenEval's overall with its interval
            v = v.get("value")
        if isinstance(v, (int, float)):
            out.append(f"{k}={v:.4g}")
    return " ".join(out)


def log_row(logger: dict, row: dict, prompts: list | None) -> None:
    if logger["name"] == "wandb":
        from skrr.experiments.runner.logging_wandb import log_run

        log_run(OmegaConf.create(logger), row, prompts=prompts)


def experiment_name() -> str:
    return HydraConfig.get().runtime.choices.get("experiment") or "adhoc"


@hydra.main(config_path=CONF_DIR, config_name="run", version_base=None)
def _main(cfg: DictConfig) -> None:
    with fail_fast():
        run_job(cfg, experiment_name())


def main() -> None:
    check_command_line("run", sys.argv[1:])
    if not os.environ.get(ROUND_ENV) and {"-m", "--multirun"} & set(sys.argv[1:]):
        adaptive = adaptive_sweep(sys.argv[1:])
        if adaptive is not None:  # one sweep per round, each launched from here
            sys.exit(adaptive())
    _main()


def adaptive_sweep(argv: list[str]):
    """The adaptive driver for this command line (None: a fixed-budget sweep), its settings checked."""
    from skrr.experiments.cli.app import composed, refuse
    from skrr.experiments.runner.adaptive import Adaptive, drive
    from skrr.experiments.runner.checks import budget_settings

    cfg = composed("run", argv)
    try:
        budget, fraction = budget_settings(cfg)
        if budget != "adaptive":
            return None
        if fraction != 1:
            raise InputError("eval.fraction is set per round by eval.budget=adaptive; leave it out")
        settings = Adaptive.from_config(cfg.eval.get("adaptive"))
    except InputError as e:
        refuse(str(e))
    experiment = next((a.partition("=")[2] for a in argv if a.lstrip("+").startswith("experiment=")), "adhoc")
    argv = [a for a in argv if a not in ("-m", "--multirun")]
    return lambda: drive(["-m", *argv], cfg.paths.root, experiment, settings)


if __name__ == "__main__":
    main()
