"""`skrr.prune`: calibration -> method -> plans, for one model and one or more sparsity targets.

A method is a `skrr.methods.Method` (built from `conf/method/<name>.yaml`); it searches on the
`PruneContext` this module builds (the text side, the calibration targets, the sub-blocks) and
returns one plan per target, so Skrr and the baselines are interchangeable everywhere downstream.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, OmegaConf

from skrr.config.choices import CERTIFIED
from skrr.config.choices import DEFAULT_COMPUTE_DTYPE as COMPUTE_DEFAULT
from skrr.encoders.view import SubBlock, to_sub_blocks, total_params
from skrr.methods import Method, as_method
from skrr.models import model_config
from skrr.models.load import TextSide, load_text_side
from skrr.plan import Plan, config_hash, sparsity
from skrr.prompts.real import calibration_record, check_prompts_fit_model
from skrr.prompts.sources import as_source
from skrr.search import distributed
from skrr.search.calibration import Calibration, build_calibration
from skrr.search.certified import Certified
from skrr.search.compute import choose_compute_dtype
from skrr.search.discrepancy import Discrepancy
from skrr.search.prefix_cache import PrefixCachedDiscrepancy

log = logging.getLogger(__name__)


@dataclass
class PruneContext:
    text_side: TextSide
    calib: Calibration
    sub_blocks: list[SubBlock]
    total: int  # dense encoder parameters (sparsity denominator)
    device: str
    progress: bool = True
    compute_dtype: torch.dtype = torch.float32  # what every forward of the method computes in
    certified: bool = False  # candidates pre-scored in bf16, decisions in float32 (skrr.search.certified)
    evaluators: list = field(default_factory=list)  # the certified evaluators made, for the plans' record

    def discrepancy(self, metric: str, projection: bool, null_term: bool, fast: bool = True,
                    cache_budget_mb: float = 2048.0) -> Discrepancy:
        """The D evaluator (it feeds the encoder the batches the calibration targets were computed
        in): prefix-cached (`fast`, what the baselines' Re-use phase uses) or the reference."""
        if projection != self.calib.projected:
            raise ValueError(f"calibration targets were computed with projection={self.calib.projected}; "
                             f"build the context with projection={projection}")
        opts = dict(metric=metric, projection=projection, null_term=null_term, device=self.device)

        def make(calib):
            if fast:
                return PrefixCachedDiscrepancy(self.text_side, calib, cache_budget_mb=float(cache_budget_mb), **opts)
            return Discrepancy(self.text_side, calib, **opts)

        if not self.certified:
            return make(self.calib)
        self.evaluators.append(Certified(make, self.calib))
        return self.evaluators[-1]

    def certified_record(self) -> dict | None:
        """Candidates scored and re-scored in float32 by every certified evaluator of the run."""
        if not self.certified:
            return None
        scored, rescored = sum(e.scored for e in self.evaluators), sum(e.rescored for e in self.evaluators)
        return {"scored": scored, "rescored": rescored, "fraction": round(rescored / scored, 4) if scored else 0.0,
                "widened": sum(e.widened for e in self.evaluators)}  # bands doubled for the deviations seen

    def plan(self, skip, method: Method, reuse=None, **info) -> Plan:
        plan = Plan(skip=[int(i) for i in skip], reuse=dict(reuse or {}), method=method.settings(), info=info,
                    encoder={"name": self.text_side.cfg.name, "config_hash": config_hash(self.text_side.encoder.config),
                             "num_sub_blocks": len(self.sub_blocks)})
        plan.sparsity = sparsity(self.sub_blocks, plan.skip, self.total)
        return plan


def make_context(model, calibration: DictConfig, device: str = "cpu", projection: bool = True,
                 batch_size: int = 8, progress: bool = True, compute_dtype: str = COMPUTE_DEFAULT) -> PruneContext:
    text_side = model if isinstance(model, TextSide) else load_text_side(model, device=device)
    enc = to_sub_blocks(text_side.encoder)
    tok = text_side.tokenizer
    prompts = as_source(calibration).select(token_length=lambda p: len(tok(p, add_special_tokens=True).input_ids))
    model_dtype = next(enc.parameters()).dtype
    dtype, why = choose_compute_dtype(compute_dtype, model_dtype, device)
    if why:
        log.info(why)
    def calibrate(mmap=False):
        return build_calibration(text_side, prompts, projection=projection, batch_size=batch_size, device=device,
                                 compute_dtype=None if dtype == model_dtype else dtype, mmap=mmap)

    if distributed.world_size() == 1:
        calib = calibrate()
    else:  # rank 0 computes and caches the dense targets; every rank then maps the file, reading its own rows
        if distributed.rank() == 0:
            calibrate()
        distributed.barrier("rank 0's dense calibration targets")
        calib = calibrate(mmap=True)
    return PruneContext(text_side, calib, enc.sub_blocks, total_params(text_side.encoder), device,
                        progress and distributed.rank() == 0, dtype, certified=compute_dtype == CERTIFIED)


def prune(model, method: Method | DictConfig | dict, calibration: DictConfig | dict, device: str = "cpu",
          progress: bool = True) -> list[Plan]:
    """Plans (one per sparsity target) for `model` (a registry name, model config or TextSide).
    `method`: a Method, a method config (`_target_`), or `{"name": "skrr", ...}` over that YAML's
    defaults (skrr.methods.as_method). Inside a process group (torchrun, srun;
    `skrr.search.distributed.init_from_env`) every rank calls this and searches its share of the
    calibration batches; all ranks return the same plans."""
    method, calibration = as_method(method), OmegaConf.create(calibration)
    check_prompts_fit_model(calibration, model.cfg if isinstance(model, TextSide) else model_config(model))
    ctx = make_context(model, calibration, device, projection=method.projection, batch_size=method.batch_size,
                       progress=progress, compute_dtype=method.compute_dtype)
    with torch.no_grad():
        plans = method.run(ctx, method.targets)
    record = calibration_record(calibration, ctx.calib.prompts, ctx.calib.key)
    for plan in plans:
        plan.info.setdefault("calibration", record)
        plan.info["world_size"] = distributed.world_size()
        plan.info.setdefault("compute_dtype", CERTIFIED if ctx.certified else str(ctx.compute_dtype).removeprefix("torch."))
        if ctx.certified:
            plan.info["certified"] = ctx.certified_record()
        # where the decisions were computed: near-ties may go the other way elsewhere (docs/exactness.md)
        plan.info.setdefault("machine", {"device": str(device), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                         "torch": torch.__version__})
    return plans
