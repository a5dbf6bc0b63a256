"""One skrr-run job, checked when it is built: everything the steps of experiments/cli/run.py read,
resolved from the composed config once (the walk never goes back to `cfg`).

    job = Job.build(cfg, "table1_pixart")   # every check, before anything loads
    floor = job.noise_floor()              # the dense job's second image set on disjoint seeds, or None
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from omegaconf import DictConfig, OmegaConf

from skrr.errors import InputError
from skrr.experiments.runner.stages import Store, plain

LOGGERS = ("none", "wandb")


def job_targets(cfg: DictConfig) -> list[float]:
    """Sparsity targets of this job: dense has one (0); `sparsity` (the sweep's list) overrides method.sparsity."""
    from skrr.methods import sparsity_targets

    value, key = (cfg.method.sparsity, "method.sparsity") if cfg.get("sparsity") is None else (cfg.sparsity, "sparsity")
    targets = sorted(set(sparsity_targets(value, key)))  # checked for dense too: a sweep's bad list fails every job
    return [0.0] if cfg.method.name == "dense" else targets


def validate(cfg: DictConfig) -> tuple[list[float], dict, dict, DictConfig]:
    """Check everything cheap before anything heavy loads; returns the sparsity targets, the eval
    prompt sets, the chosen metrics' configs and cfg with its sampler resolved
    (skrr.experiments.runner.checks.with_sampler)."""
    from skrr.encoders.quantize import settings
    from skrr.encoders.quantize import validate as validate_quantize
    from skrr.eval.generate import local_device
    from skrr.eval.metrics import check_metric
    from skrr.eval.prompts import prompt_sets
    from skrr.experiments.runner.checks import check_config
    from skrr.models import check_device
    from skrr.prompts.real import check_prompts_fit_model
    from skrr.prompts.sources import as_source

    validate_quantize(*settings(cfg.model), cfg.eval.device)
    targets = job_targets(cfg)  # the effective list (`sparsity` over method.sparsity), checked
    cfg = check_config(cfg)  # builds the method and the prompt source: their constructors check every setting
    check_device(local_device(cfg.eval.device), "eval.device")  # first: `device` follows it by default
    check_device(local_device(cfg.device), "device")
    if cfg.method.name != "dense":  # dense needs no calibration
        check_prompts_fit_model(cfg.calibration, cfg.model)
        as_source(cfg.calibration).check()
    unknown = [m for m in cfg.eval.metrics if m not in cfg.metrics]
    if unknown:
        raise InputError(f"unknown metrics {unknown}; choose from {list(cfg.metrics)} (e.g. eval.metrics=[clip,efficiency])")
    metrics = {m: plain(cfg.metrics[m]) for m in cfg.eval.metrics}
    classes = {name: check_metric(name, config) for name, config in metrics.items()}  # a mistyped key fails here
    sets = prompt_sets(cfg.eval.prompts)
    for name in metrics:
        wanted = classes[name].prompt_set
        if wanted == "text" and "text" not in sets:
            raise InputError(f"{name} needs text prompts: set eval.prompts.coco_captions=PATH "
                             "(annotations/captions_val2014.json) or eval.prompts.text=[...]")
        if wanted == "geneval" and "geneval" not in sets:
            raise InputError(f"{name} needs GenEval prompts: set eval.prompts.geneval_metadata=PATH "
                             "(geneval prompts/evaluation_metadata.jsonl)")
        if wanted == "geneval2" and "geneval2" not in sets:
            raise InputError(f"{name} needs GenEval 2 prompts: set eval.prompts.geneval2_metadata=PATH "
                             "(geneval2_data.jsonl from github.com/facebookresearch/GenEval2)")
    if cfg.logger.name not in LOGGERS:
        raise InputError(f"unknown logger {cfg.logger.name!r}; use logger=none or logger=wandb")
    return targets, sets, metrics, cfg


@dataclass(frozen=True)
class Job:
    experiment: str
    model: dict
    method: dict
    calibration: dict
    targets: tuple[float, ...]
    sets: dict  # prompt set name -> prompts
    metrics: dict  # metric name -> config
    sampler: dict  # resolved: the model's defaults under eval.sampler
    dtype: str | None  # the pipeline's (eval.dtype)
    device: str  # where the pipeline runs
    prune_device: str
    store: Store
    rank: int
    world: int
    progress: bool
    plan_d: bool  # score every plan with Skrr's default D (row["discrepancy"])
    save_encoder: bool
    logger: dict
    config: dict  # the resolved config, as each row records it
    wants_noise_floor: bool  # eval.noise_floor (the dense job only)
    seed_offset: int = 0  # > 0: the noise floor's second image set

    @classmethod
    def build(cls, cfg: DictConfig, experiment: str = "adhoc") -> Job:
        import torch

        from skrr.eval.generate import local_device, resolve_rank

        targets, sets, metrics, cfg = validate(cfg)
        if cfg.get("threads"):  # CPU runs: more threads than free cores makes torch spin and crawl
            torch.set_num_threads(int(cfg.threads))
        rank, world = resolve_rank()
        return cls(experiment=experiment, model=plain(cfg.model), method=plain(cfg.method),
                   calibration=plain(cfg.calibration), targets=tuple(targets), sets=sets, metrics=metrics,
                   sampler=plain(cfg.eval.sampler), dtype=cfg.eval.get("dtype"), device=local_device(cfg.eval.device),
                   prune_device=local_device(cfg.device), store=Store(cfg.paths.root, bool(cfg.get("verify"))),
                   rank=rank, world=world, progress=bool(cfg.progress),
                   plan_d=cfg.method.name != "dense" and bool(cfg.eval.get("plan_d", True)),
                   save_encoder=bool(cfg.get("save_encoder")), logger=plain(cfg.logger),
                   config=OmegaConf.to_container(cfg, resolve=True),
                   wants_noise_floor=cfg.method.name == "dense" and bool(cfg.eval.get("noise_floor")))

    @property
    def dense(self) -> bool:
        return self.method["name"] == "dense"

    def noise_floor(self) -> Job | None:
        """The dense job with eval.noise_floor=true scores the dense model once more on disjoint
        seeds (base_seed + the number of prompts): how far every metric moves with the seeds alone."""
        if not self.wants_noise_floor or self.seed_offset:
            return None
        shift = max(len(prompts) for prompts in self.sets.values())
        sampler = {**self.sampler, "base_seed": int(self.sampler["base_seed"]) + shift}
        config = {**self.config, "eval": {**self.config["eval"], "sampler": sampler}}
        return replace(self, sampler=sampler, config=config, seed_offset=shift)

