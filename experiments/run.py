"""skrr-run: plan -> images -> metrics -> results row, for one composed config.

    skrr-run model=tiny_pixart method=skrr sparsity=[0.2,0.4] eval=smoke
    skrr-run -m experiment=table1_pixart model=tiny_pixart eval=smoke

A job prunes once for all its sparsity targets (one Skrr search serves every target) and then,
per target, generates and scores images and appends one row to `<paths.root>/results/<experiment>.jsonl`.
Every step is a stage of experiments/stages.py, keyed by its inputs: the dense images are keyed
without the method, so every run of a sweep shares them, and a re-run does only what is missing.
Under torchrun every rank generates its shard of each image set; rank 0 scores and stores.
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

from experiments.cli import CONF_DIR, fail_fast
from experiments.results import append_result, results_path
from eval.prompts import texts_of
from experiments.stages import DENSE, Images, Pipeline, PlanD, Plans, Score, Store, digest, plain, plan_identity
from skrr.errors import InputError

log = logging.getLogger("skrr-run")
LOGGERS = ("none", "wandb")


def job_targets(cfg: DictConfig) -> list[float]:
    """Sparsity targets of this job: dense has one (0); `sparsity` (the sweep's list) overrides method.sparsity."""
    from skrr.prune import targets_of

    source, key = (cfg.method, "method.sparsity") if cfg.get("sparsity") is None else ({"sparsity": cfg.sparsity}, "sparsity")
    targets = sorted(set(targets_of(OmegaConf.create(source), key)))  # checked for dense too: a sweep's bad list fails every job
    return [0.0] if cfg.method.name == "dense" else targets


def validate(cfg: DictConfig) -> tuple[dict, dict, DictConfig]:
    """Check everything cheap before anything heavy loads; returns the eval prompt sets, the
    chosen metrics' configs and cfg with its sampler resolved (experiments.checks.with_sampler)."""
    from eval.generate import local_device
    from experiments.checks import check_config
    from eval.metrics import check_metric
    from eval.prompts import prompt_sets
    from skrr.calibration import check_calibration
    from skrr.models import check_device
    from skrr.prune import validate_method
    from skrr.real_prompts import check_prompts_fit_model

    from skrr.quantize import settings, validate as validate_quantize

    validate_quantize(*settings(cfg.model), cfg.eval.device)
    validate_method(OmegaConf.merge(cfg.method, {"sparsity": job_targets(cfg)}))
    cfg = check_config(cfg)
    check_device(local_device(cfg.eval.device), "eval.device")  # first: `device` follows it by default
    check_device(local_device(cfg.device), "device")
    if cfg.method.name != "dense":  # dense needs no calibration
        check_prompts_fit_model(cfg.calibration, cfg.model)
        check_calibration(cfg.calibration)
    unknown = [m for m in cfg.eval.metrics if m not in cfg.metrics]
    if unknown:
        raise InputError(f"unknown metrics {unknown}; choose from {list(cfg.metrics)} (e.g. eval.metrics=[clip,efficiency])")
    metrics = {m: plain(cfg.metrics[m]) for m in cfg.eval.metrics}
    classes = {name: check_metric(name, config) for name, config in metrics.items()}  # a mistyped key fails here
    sets = prompt_sets(cfg.eval.prompts)
    for name, config in metrics.items():
        wanted = classes[name].prompt_set
        if wanted == "text" and "text" not in sets:
            raise InputError(f"{name} needs text prompts: set eval.prompts.coco_captions=PATH "
                             "(annotations/captions_val2014.json) or eval.prompts.text=[...]")
        if wanted == "geneval" and "geneval" not in sets:
            raise InputError(f"{name} needs GenEval prompts: set eval.prompts.geneval_metadata=PATH "
                             "(geneval prompts/evaluation_metadata.jsonl)")
    if cfg.logger.name not in LOGGERS:
        raise InputError(f"unknown logger {cfg.logger.name!r}; use logger=none or logger=wandb")
    return sets, metrics, cfg


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
    keep = ("target", "depth_d", "d_skip", "d_final", "order", "candidates_scored", "near_ties", "compute_dtype", "machine")
    return {"skip": plan.skip, "reuse": {str(k): v for k, v in plan.reuse.items()}, "weights": plan.weights,
            "num_sub_blocks": (plan.encoder or {}).get("num_sub_blocks"), "path": str(plan_dir),
            **{k: plan.info[k] for k in keep if k in plan.info}}


def discrepancy(plan_d: dict | None, target: float, identity: dict, calibration) -> dict | None:
    """The row's D on Skrr's default yardstick (experiments.plan_d) and what it was computed with."""
    from experiments.plan_d import SETTINGS

    if identity == DENSE:
        value = 0.0
    elif plan_d is None:
        return None
    else:
        value = plan_d["output"]["d"][f"{target:.4f}"]
    return {"value": value, **{k: SETTINGS[k] for k in ("metric", "projection", "null_term")},
            "calibration": plain(calibration)}


def run_job(cfg: DictConfig, experiment: str = "adhoc", seed_offset: int = 0) -> list[dict]:
    """Run (or resume) one job; returns one result row per sparsity target. The dense job with
    eval.noise_floor=true also scores the dense model on disjoint seeds (base_seed + the number of
    prompts), in a row marked seed_offset: how far every metric moves with the seeds alone."""
    import torch

    from eval.generate import local_device, resolve_rank
    from eval.metrics import metric_class
    from skrr.plan import Plan

    sets, metrics, cfg = validate(cfg)
    if cfg.get("threads"):  # CPU runs: more threads than free cores makes torch spin and crawl
        torch.set_num_threads(int(cfg.threads))
    rank, world = resolve_rank()
    store, ev, model = Store(cfg.paths.root, bool(cfg.get("verify"))), cfg.eval, plain(cfg.model)
    device, dtype, sampler = local_device(ev.device), ev.get("dtype"), plain(ev.sampler)
    plans = Plans(model, plain(cfg.method), plain(cfg.calibration), tuple(job_targets(cfg)))
    plan_rec = plans.run(store, local_device(cfg.device), cfg.progress)
    plan_dir = store.dir("plans", plans.key)
    plan_d = None  # every plan's D on Skrr's default yardstick (dense: 0 by definition, nothing to load)
    if cfg.method.name != "dense" and cfg.eval.get("plan_d", True) and rank == 0:
        plan_d = PlanD(model, plain(cfg.calibration), plans.key).run(store, Plans.files(store, plans.key, plan_rec),
                                                                     local_device(cfg.device))
    classes = {m: metric_class(c, m) for m, c in metrics.items()}
    needed = sorted({c.prompt_set for c in classes.values() if c.prompt_set}, key=["text", "geneval"].index)
    needs_dense = any(c.needs_dense(metrics[m]) for m, c in classes.items())
    dense_pipe, dense_images = Pipeline(model, device, dtype), Images(model, DENSE, sampler, dtype, sets)

    rows = []
    for target, plan_path in Plans.files(store, plans.key, plan_rec):
        plan = Plan.load(plan_path)
        if str(device).startswith("cuda") and torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        identity = plan_identity(plan, plan_dir)
        pipe = dense_pipe if identity == DENSE else Pipeline(model, device, dtype, plan, plan_dir)
        images = Images(model, identity, sampler, dtype, sets)
        records = {"plan": plan_rec, **({"discrepancy": plan_d} if plan_d else {})}
        if needs_dense:  # shared by every run of the sweep
            records["dense_images"] = dense_images.run(store, "text", dense_pipe, rank, world)
            if pipe is not dense_pipe:
                dense_pipe.release()  # never hold two pipelines in GPU memory
        for set_name in needed:
            # GenEval prompts identical to the text prompts (the toy world): the same images, linked
            same = set_name == "geneval" and "text" in needed and texts_of(sets["geneval"]) == sets["text"]
            records[f"images/{set_name}"] = images.run(store, set_name, pipe, rank, world,
                                                       twin=images.folder(store, "text") if same else None)
        if rank > 0:  # the other ranks only help generate
            pipe.release()
            continue
        values, metric_keys, items = {}, {}, {}
        for name, config in metrics.items():
            cls = classes[name]
            if cls.prompt_set is None:  # reads no images: a function of the plan (efficiency)
                score = Score(name, config, {"plan": identity, "model": model, "sampler": sampler})
            else:
                dense = dense_images.folder(store, "text") if cls.needs_dense(config) else None
                score = Score(name, config, {"images": images.key, "set": cls.prompt_set,
                                             "dense": dense_images.key if dense else None},
                              images.folder(store, cls.prompt_set), tuple(sets[cls.prompt_set]), dense)
            rec = score.run(store, pipe)
            records[f"metrics/{name}"], values[name], metric_keys[name] = rec, rec["output"]["value"], score.key
            if rec["output"].get("items"):
                items[name] = str(store.dir("metrics", score.key) / rec["output"]["items"])
        row = {"run_key": digest("run", plans.key, target, images.key, metric_keys), "experiment": experiment,
               "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "method": cfg.method.name, "model": model["name"],
               "target": target, "sparsity": float(plan.sparsity or 0.0), "metrics": values,
               **({"seed_offset": seed_offset} if seed_offset else {}),
               "plan": plan_summary(plan, plan_dir), "sampler": sampler,
               "discrepancy": discrepancy(plan_d, target, identity, cfg.calibration),
               "timings": {k: r["seconds"] for k, r in records.items()},
               "ran": sorted(k for k, r in records.items() if r["ran"]),
               "peak_memory": peak_memory(device), **provenance(),
               "artifacts": {"plan": str(plan_path), "images": str(store.dir("images", images.key)),
                             "dense_images": str(store.dir("images", dense_images.key)), "items": items},
               "config": {**OmegaConf.to_container(cfg, resolve=True), "target": target}}
        if cfg.get("save_encoder") and identity != DENSE:
            row["artifacts"]["encoder"] = str(save_encoder(model, plan, plan_dir, row, cfg.paths.root))
        if append_result(results_path(cfg.paths.root, experiment), row):  # results first, then W&B
            log_row(cfg.logger, row, sets.get("text"))
        print(f"{model['name']} {cfg.method.name} target {target:.2%}: sparsity {row['sparsity']:.2%} "
              f"{_brief(values)} (ran: {', '.join(row['ran']) or 'nothing, all cached'})")
        rows.append(row)
        if pipe is not dense_pipe:
            pipe.release()
    if cfg.method.name == "dense" and cfg.eval.get("noise_floor") and not seed_offset:
        shift = max(len(prompts) for prompts in sets.values())
        twin = OmegaConf.merge(cfg, {"eval": {"sampler": {"base_seed": int(sampler["base_seed"]) + shift}}})
        rows += run_job(twin, experiment, seed_offset=shift)
    return rows


def save_encoder(model: dict, plan, plan_dir: Path, row: dict, root) -> Path:
    """The pruned encoder of this row as a shareable folder (`<root>/encoders/<run_key>`), its model
    card carrying the metrics this run measured."""
    from experiments.prune import card_source
    from skrr import apply_plan, save_pruned
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


def log_row(logger: DictConfig, row: dict, prompts: list | None) -> None:
    if logger.name == "wandb":
        from experiments.logging_wandb import log_run

        log_run(logger, row, prompts=prompts)


def experiment_name() -> str:
    return HydraConfig.get().runtime.choices.get("experiment") or "adhoc"


@hydra.main(config_path=CONF_DIR, config_name="run", version_base=None)
def main(cfg: DictConfig) -> None:
    with fail_fast():
        run_job(cfg, experiment_name())


if __name__ == "__main__":
    main()
