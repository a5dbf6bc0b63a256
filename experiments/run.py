"""skrr-run: prune -> generate -> evaluate -> store -> log, for one composed config.

    skrr-run model=tiny_pixart method=skrr sparsity=[0.2,0.4] eval=smoke
    skrr-run -m experiment=table1_pixart model=tiny_pixart eval=smoke

A job prunes once for all its sparsity targets (a Skrr search serves every target; the plan
stage is keyed on model + method cfg with the full target list + calibration) and then, per
target, generates and scores images and appends one row to `<paths.root>/results/<experiment>.jsonl`.
The dense images (and, for tiny evals, the FID reference built from them) are stages of their
own, keyed without the method, so every run of a sweep shares them. See experiments/stages.py.
"""
from __future__ import annotations

import logging
import resource
import subprocess
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from experiments import stages as S
from experiments.cli import CONF_DIR, fail_fast
from experiments.results import append_result, results_path

log = logging.getLogger("skrr-run")
LOGGERS = ("none", "wandb")


def job_targets(cfg: DictConfig) -> list[float]:
    """Sparsity targets of this job: dense has one (0); `sparsity` (the sweep's list) overrides method.sparsity."""
    from skrr.prune import targets_of

    if cfg.method.name == "dense":
        return [0.0]
    source = cfg.method if cfg.get("sparsity") is None else {"sparsity": cfg.sparsity}
    return sorted(set(targets_of(OmegaConf.create(source))))


def validate(cfg: DictConfig) -> dict:
    """Check everything cheap before anything heavy loads; returns the eval prompt sets."""
    from eval.metrics import METRICS, fid_needs_reference_stats, metric_config
    from eval.run import prompt_sets
    from skrr.prune import validate_method

    targets = job_targets(cfg)
    validate_method(OmegaConf.merge(cfg.method, {"sparsity": targets}))
    unknown = [m for m in cfg.eval.metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)} (e.g. eval.metrics=[clip,efficiency])")
    for m in cfg.eval.metrics:
        if m == "fid" and fid_needs_reference_stats(metric_config(m, cfg.eval)):
            raise ValueError("FID needs reference statistics: set eval.overrides.fid.reference_stats=PATH "
                             "(build them once with `python -m eval.fid build-ref`)")
    sets = prompt_sets(cfg.eval)
    needed = S.needed_sets(cfg.eval.metrics)
    if "text" in needed and "text" not in sets:
        raise ValueError("FID/CLIP/DreamSim need text prompts: set eval.prompts.coco_captions=PATH "
                         "(annotations/captions_val2014.json) or eval.prompts.text=[...]")
    if "geneval" in needed and "geneval" not in sets:
        raise ValueError("GenEval needs its prompts: set eval.prompts.geneval_metadata=PATH "
                         "(geneval prompts/evaluation_metadata.jsonl)")
    if cfg.logger.name not in LOGGERS:
        raise ValueError(f"unknown logger {cfg.logger.name!r}; use logger=none or logger=wandb")
    return sets


def provenance() -> dict:
    import diffusers
    import torch
    import transformers

    import skrr

    repo = Path(__file__).resolve().parents[1]
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
    keep = ("target", "depth_d", "d_skip", "d_final", "order", "candidates_scored")
    return {"skip": plan.skip, "reuse": {str(k): v for k, v in plan.reuse.items()}, "weights": plan.weights,
            "num_sub_blocks": (plan.encoder or {}).get("num_sub_blocks"), "path": str(plan_dir),
            **{k: plan.info[k] for k in keep if k in plan.info}}


def run_job(cfg: DictConfig, experiment: str = "adhoc") -> list[dict]:
    """Run (or resume) one job; returns one result row per sparsity target."""
    import torch

    from eval.metrics import fid_reference_from_dense, metric_config
    from skrr.plan import Plan

    from eval.generate import resolve_rank

    sets = validate(cfg)
    if cfg.get("threads"):  # CPU runs: more threads than free cores makes torch spin and crawl
        torch.set_num_threads(int(cfg.threads))
    rank, world = resolve_rank()  # torchrun: every rank generates its shard; rank 0 scores and stores
    store, targets, model, ev = S.Store(cfg.paths.root), job_targets(cfg), cfg.model, cfg.eval
    metrics = list(ev.metrics)
    pkey = S.plan_key(model, cfg.method, cfg.calibration, targets)
    plan_rec = store.run("plans", pkey, lambda out: S.make_plans(out, model, cfg.method, cfg.calibration, targets,
                                                                 S.local_device(cfg.device), cfg.progress),
                         inputs={"model": model, "method": cfg.method, "calibration": cfg.calibration, "targets": targets})
    plan_dir = store.dir("plans", pkey)
    dense_key = S.images_key(model, S.DENSE, ev, sets)
    dense_pipe = S.LazyPipeline(lambda: S.load_run_pipeline(model, ev))
    dense_text = store.dir("images", dense_key) / "text"

    def images(key, pipe, identity, set_name):
        prompts = sets[set_name]
        twin = None  # GenEval prompts identical to the text set (the toy world): the same images, linked
        if set_name == "geneval" and "text" in S.needed_sets(metrics) and S.texts_of(prompts) == S.texts_of(sets.get("text", [])):
            twin = store.dir("images", f"{key}/text")
        return store.run_sharded("images", f"{key}/{set_name}",
                                 lambda out, r, w: S.generate_shard(out, pipe, ev.sampler, prompts, r, w, twin),
                                 lambda out: S.merge_set(out, prompts),
                                 {"model": model, "plan": identity, "sampler": ev.sampler}, rank, world)

    def dense_images():  # shared by every run of the sweep
        return images(dense_key, dense_pipe, S.DENSE, "text")

    rows = []
    for target, name in plan_rec["output"]["plans"].items():
        if str(ev.device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        plan = Plan.load(plan_dir / name)
        identity = S.plan_identity(plan, plan_dir)
        ikey = S.images_key(model, identity, ev, sets)
        pipe = dense_pipe if identity == S.DENSE else S.LazyPipeline(
            lambda plan=plan: S.load_run_pipeline(model, ev, plan, plan_dir))
        records = {"plan": plan_rec}
        tiny_fid = "fid" in metrics and fid_reference_from_dense(metric_config("fid", ev))
        if "dreamsim" in metrics or tiny_fid:
            records["dense_images"] = dense_images()
            if pipe is not dense_pipe:
                dense_pipe.release()  # never hold two pipelines in GPU memory
        for set_name in S.needed_sets(metrics):
            records[f"images/{set_name}"] = images(ikey, pipe, identity, set_name)
        if rank > 0:  # the other ranks only help generate
            pipe.release()
            continue
        eval_cfg = ev
        if tiny_fid:
            fkey = S.digest("fid_ref", dense_key)
            ref = store.run("features", fkey, lambda out: S.fid_reference(out, dense_text), inputs={"images": dense_key})
            records["fid_reference"] = ref
            eval_cfg = OmegaConf.merge(S.plain(ev), {"overrides": {"fid": {"reference_stats": ref["output"]["reference_stats"]}}})
        values, metric_keys = {}, {}
        for m in metrics:
            depends = {"plan": identity, "model": model, "sampler": ev.sampler} if m == "efficiency" else \
                {"images": ikey, "dense": dense_key if m == "dreamsim" else None}
            mkey = S.digest("metric", m, metric_config(m, eval_cfg), depends)
            rec = store.run("metrics", mkey, lambda out, m=m: {"value": S.compute_metric(
                m, eval_cfg, pipe, store.dir("images", ikey), dense_text)}, inputs={"metric": m, **depends})
            records[f"metrics/{m}"], values[m], metric_keys[m] = rec, rec["output"]["value"], mkey
        row = {"run_key": S.digest("run", pkey, target, ikey, metric_keys), "experiment": experiment,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "method": cfg.method.name, "model": model.name,
               "target": float(target), "sparsity": float(plan.sparsity or 0.0), "metrics": values,
               "plan": plan_summary(plan, plan_dir),
               "timings": {k: r["seconds"] for k, r in records.items()},
               "ran": sorted(k for k, r in records.items() if r["ran"]),
               "peak_memory": peak_memory(ev.device), **provenance(),
               "artifacts": {"plan": str(plan_dir / name), "images": str(store.dir("images", ikey)),
                             "dense_images": str(store.dir("images", dense_key))},
               "config": {**OmegaConf.to_container(cfg, resolve=True), "target": float(target)}}
        if append_result(results_path(cfg.paths.root, experiment), row):  # results first, then W&B
            log_row(cfg, row, sets)
        print(f"{model.name} {cfg.method.name} target {float(target):.2%}: sparsity {row['sparsity']:.2%} "
              f"{_brief(values)} (ran: {', '.join(row['ran']) or 'nothing, all cached'})")
        rows.append(row)
        if pipe is not dense_pipe:
            pipe.release()
    return rows


def _brief(values: dict) -> str:
    out = []
    for k, v in values.items():
        if isinstance(v, dict):
            v = v.get("overall", v.get("tflops"))
        if isinstance(v, (int, float)):
            out.append(f"{k}={v:.4g}")
    return " ".join(out)


def log_row(cfg: DictConfig, row: dict, sets: dict) -> None:
    if cfg.logger.name == "wandb":
        from experiments.logging_wandb import log_run

        log_run(cfg.logger, row, prompts=sets.get("text"))


def experiment_name() -> str:
    return HydraConfig.get().runtime.choices.get("experiment") or "adhoc"


@hydra.main(config_path=CONF_DIR, config_name="run", version_base=None)
def main(cfg: DictConfig) -> None:
    with fail_fast():
        run_job(cfg, experiment_name())


if __name__ == "__main__":
    main()
