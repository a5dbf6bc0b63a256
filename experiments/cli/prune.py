"""skrr-prune: `skrr-prune model=pixart_sigma method=skrr method.sparsity=0.4 method.beam_width=3`.

Writes plan.json (plan_<sparsity>.json for several targets) into the run directory, logs D
per depth, and prints the achieved sparsity and where the plans are. The newest run is also
reachable as `latest` beside the run directory (a relative link; by default
`<paths.root>/prune/<model>/<method>/latest/`), the path the next command takes: `skrr-inspect model=tiny_pixart plan=runs/prune/tiny_pixart/skrr/latest/plan.json`.
`-m` sweeps work (calibration targets are cached).

Data-parallel (docs/cluster.md): `torchrun --nproc_per_node N -m skrr.experiments.cli.prune ...` or
`srun -n N python -m skrr.experiments.cli.prune ...` shares the calibration batches out across N ranks
(gloo on CPU, nccl on CUDA); the plan is the one a single process finds, and rank 0 writes it.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from skrr.experiments.cli.app import CONF_DIR, check_command_line, fail_fast
from skrr.experiments.runner.checks import check_parts
from skrr.methods import Method
from skrr.models import check_device
from skrr.prompts.real import check_prompts_fit_model
from skrr.prompts.sources import as_source
from skrr.search.ranks import env_world

log = logging.getLogger("skrr-prune")


def card_source(model) -> dict:
    """What a pruned folder's model card says about the model it was pruned from."""
    from skrr.models import build_model, model_config

    spec = build_model(model_config(model))
    return {"model": spec.name, "pretrained": spec.pipeline.provenance(spec),
            "pipeline_class": str(spec.pipeline.pipeline_class), "component": spec.text_encoder}


def write_plans(plans, out_dir: Path, save_encoder: bool, model_name: str, device: str,
                save_pipeline: bool = False) -> list[Path]:
    from skrr.plan import plan_file_name

    paths = []
    source = card_source(model_name) if save_encoder or save_pipeline else None
    for plan in plans:
        name = "plan.json" if len(plans) == 1 else plan_file_name(plan.info["target"])
        paths.append(plan.save(out_dir / name))  # with LaCo's merged weights beside it
        if save_encoder:
            from skrr import apply_plan, save_pruned
            from skrr.models import load_text_side

            enc = load_text_side(model_name, device=device).encoder
            apply_plan(enc, plan, weights_dir=out_dir)
            save_pruned(enc, plan, out_dir / (Path(name).stem.replace("plan", "encoder")), source=source)
        if save_pipeline:
            from skrr.hub.pruned_io import save_pruned_pipeline
            from skrr.models import load_pipeline, model_config

            component = model_config(model_name).text_encoder
            pipe = load_pipeline(model_name, device=device, plan=plan, plan_dir=out_dir)
            save_pruned_pipeline(pipe, component, plan, out_dir / (Path(name).stem.replace("plan", "pipeline")), source=source)
    return paths


def link_latest(out_dir: Path, link: Path) -> Path:
    """Point `link` at `out_dir` (relative, so a moved or mounted runs/ keeps it), replacing an older
    link atomically: a reader never sees it missing."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(out_dir.resolve(), link.parent.resolve()), target_is_directory=True)
    os.replace(tmp, link)
    return link


def check(cfg: DictConfig) -> Method:
    """Every check of the input, before torch is imported; returns the method, built once."""
    method = check_parts(cfg).method
    check_device(cfg.device)
    if method.prunes:  # a method that removes nothing needs no calibration
        check_prompts_fit_model(cfg.calibration, cfg.model)
        as_source(cfg.calibration).check()
    return method


def search(cfg: DictConfig, method: Method) -> tuple[list, str]:
    """The plans and the device this rank computed on, found by every rank of a torchrun/srun group (one process without one). The
    search's libraries (torch, transformers, diffusers) load here, once the input is checked."""
    from skrr.prune import prune
    from skrr.search import distributed

    device = distributed.init_from_env(cfg.device, float(cfg.distributed_timeout_s))
    try:
        return prune(cfg.model, method, cfg.calibration, device=device, progress=cfg.progress), device
    except distributed.RankLost as e:  # not an input error: another rank died
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    finally:
        distributed.close()


def run(cfg: DictConfig) -> None:
    method = check(cfg)
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    plans, device = search(cfg, method)
    if env_world()[0] != 0:  # every rank holds the same plans; rank 0 writes them
        return
    skip_margins = plans[0].info.get("margins", {}).get("skip", [])  # one search serves every target
    for depth, d in enumerate(plans[0].info.get("depth_d", []), 1):
        m = skip_margins[depth - 1] if depth <= len(skip_margins) else {}
        log.info("depth %d: D=%.6g%s", depth, d, "".join(f", {k} margin {m[k]:.2e}" for k in ("keep", "lead")
                                                         if m.get(k) is not None))
    paths = write_plans(plans, out_dir, cfg.save_encoder, cfg.model, device, cfg.save_pipeline)
    latest = link_latest(out_dir, out_dir.parent / "latest")  # runs/prune/<model>/<method>/latest by default
    for plan, path in zip(plans, paths):
        print(f"{cfg.model.name} {cfg.method.name} target {plan.info['target']:.2%}: sparsity: {plan.sparsity:.2%} "
              f"skip={plan.skip} reuse={plan.reuse} -> {path}")
        if plan.info.get("near_ties"):
            print(f"  near-ties (closer than the {plan.info['margins']['tolerance']:.0e} tolerance; another machine "
                  f"could decide them differently): {'; '.join(plan.info['near_ties'])}")
    print(f"plan{'s' if len(paths) > 1 else ''}: {' '.join(str(latest / p.name) for p in paths)}")


@hydra.main(config_path=CONF_DIR, config_name="prune", version_base=None)
def _main(cfg: DictConfig) -> None:
    with fail_fast("nothing is resumed: run the same command again (the calibration targets stay cached)"):
        run(cfg)


def main() -> None:
    check_command_line("prune", sys.argv[1:])
    if env_world()[0] != 0:  # ranks > 0 write no Hydra files or logs into rank 0's run dir
        sys.argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
    _main()


if __name__ == "__main__":
    main()
