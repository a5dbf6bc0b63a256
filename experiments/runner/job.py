"""One skrr-run job, checked when it is built: everything the steps of experiments/cli/run.py read,
resolved from the composed config once (the walk never goes back to `cfg`), the method built once
and passed down to the search.

    job = Job.build(cfg, "table1_pixart")   # every check, before anything loads
    floor = job.noise_floor()              # the dense job's second image set on disjoint seeds, or None
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from omegaconf import DictConfig, OmegaConf

from skrr.errors import InputError
from skrr.eval.prompts import prompt_sets
from skrr.experiments.runner.checks import Checked, budget_settings, check_parts
from skrr.experiments.runner.stages import Store, plain
from skrr.methods import Method, sparsity_targets
from skrr.models import check_device
from skrr.prompts.real import check_prompts_fit_model
from skrr.prompts.sources import as_source

LOGGERS = ("none", "wandb")
def validate(cfg: DictConfig) -> tuple[list[float], dict, dict, Checked]:
    """Check everything before anything heavy loads: first what needs no torch (every setting of
    the model, method, calibration, sampler, prompts and logger), then what does (`check_machine`:
    quantization, devices, the metrics' classes). Returns the sparsity targets (dense: [0]), the eval
    prompt sets, the chosen metrics' configs and the checked parts (the method built with the targets)."""
    value, key = (cfg.method.sparsity, "method.sparsity") if cfg.get("sparsity") is None else (cfg.sparsity, "sparsity")
    targets = sorted(set(sparsity_targets(value, key)))  # checked for dense too: a sweep's bad list fails every job
    checked = check_parts(cfg, targets)  # builds the model, the method and the prompt source: each checks its settings
    cfg = checked.cfg
    if checked.method.prunes:  # dense needs no calibration
        check_prompts_fit_model(cfg.calibration, cfg.model)
        as_source(cfg.calibration).check()
    else:
        targets = [0.0]
    unknown = [m for m in cfg.eval.metrics if m not in cfg.metrics]
    if unknown:
        raise InputError(f"unknown metrics {unknown}; choose from {list(cfg.metrics)} (e.g. eval.metrics=[clip,efficiency])")
    if cfg.logger.name not in LOGGERS:
        raise InputError(f"unknown logger {cfg.logger.name!r}; use logger=none or logger=wandb")
    sets = prompt_sets(cfg.eval.prompts)
    metrics = {m: plain(cfg.metrics[m]) for m in cfg.eval.metrics}
    check_machine(cfg, metrics, sets)
    return targets, sets, metrics, checked


def check_machine(cfg: DictConfig, metrics: dict, sets: dict) -> None:
    """The checks that need torch: the quantization backend, the devices, the metrics' keys and the
    prompt sets they read (their classes are torchmetrics Metrics)."""
    from skrr.encoders.quantize import settings
    from skrr.encoders.quantize import validate as validate_quantize
    from skrr.eval.generate import local_device
    from skrr.eval.metrics import check_metric

    validate_quantize(*settings(cfg.model), cfg.eval.device)
    check_device(local_device(cfg.eval.device), "eval.device")  # first: `device` follows it by default
    check_device(local_device(cfg.device), "device")
    classes = {name: check_metric(name, config) for name, config in metrics.items()}  # a mistyped key fails here
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


@dataclass(frozen=True)
class Job:
    experiment: str
    model: dict
    method: Method  # built once (its settings checked) with the job's targets; the search runs it
    method_config: dict  # as composed: what the plans' cache key hashes and each row records
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
    budget: str = "full"  # eval.budget: full, or adaptive (a round of skrr.experiments.runner.adaptive)
    fraction: float = 1.0  # eval.fraction: the share of every prompt set generated and scored
    seed_offset: int = 0  # > 0: the noise floor's second image set

    @property
    def results_name(self) -> str:
        """Where the rows go (results/<name>.jsonl): a share's rows never mix with the full budget's."""
        if self.budget == "adaptive":
            from skrr.experiments.runner.adaptive import round_name

            return round_name(self.experiment, self.fraction)
        return self.experiment if self.fraction == 1 else f"{self.experiment}-f{self.fraction:g}"

    @classmethod
    def build(cls, cfg: DictConfig, experiment: str = "adhoc") -> Job:
        targets, sets, metrics, checked = validate(cfg)
        import torch  # checked: the run's libraries load from here on

        from skrr.eval.generate import local_device, resolve_rank

        cfg, method = checked.cfg, checked.method
        if cfg.get("threads"):  # CPU runs: more threads than free cores makes torch spin and crawl
            torch.set_num_threads(int(cfg.threads))
        rank, world = resolve_rank()
        budget, fraction = budget_settings(cfg)
        return cls(experiment=experiment, model=plain(cfg.model), method=method, method_config=plain(cfg.method),
                   calibration=plain(cfg.calibration), targets=tuple(targets), sets=sets, metrics=metrics,
                   sampler=plain(cfg.eval.sampler), dtype=cfg.eval.get("dtype"), device=local_device(cfg.eval.device),
                   prune_device=local_device(cfg.device), store=Store(cfg.paths.root, bool(cfg.get("verify"))),
                   rank=rank, world=world, progress=bool(cfg.progress),
                   plan_d=method.prunes and bool(cfg.eval.get("plan_d", True)),
                   save_encoder=bool(cfg.get("save_encoder")), logger=plain(cfg.logger),
                   config=OmegaConf.to_container(cfg, resolve=True),
                   wants_noise_floor=not method.prunes and bool(cfg.eval.get("noise_floor")), budget=budget,
                   fraction=fraction)

    def noise_floor(self) -> Job | None:
        """The dense job with eval.noise_floor=true scores the dense model once more on disjoint
        seeds (base_seed + the number of prompts): how far every metric moves with the seeds alone."""
        if not self.wants_noise_floor or self.seed_offset:
            return None
        shift = max(len(prompts) for prompts in self.sets.values())
        sampler = {**self.sampler, "base_seed": int(self.sampler["base_seed"]) + shift}
        config = {**self.config, "eval": {**self.config["eval"], "sampler": sampler}}
        return replace(self, sampler=sampler, config=config, seed_offset=shift)

