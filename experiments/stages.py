"""Run stages and their content-addressed artifacts under one root (`paths.root`, default runs/).

    plans/<key>/plan_<target>.json     key: model + method cfg (all targets) + calibration cfg
    images/<key>/<set>/00000.png ...   key: model + plan identity (skip, reuse, weights) + sampler + prompts
    features/<key>/fid_ref.npz         tiny evals only: FID reference from the dense images
    metrics/<key>/                     key: images key(s) + metric cfg (+ dense images for DreamSim)
    stage_log.jsonl                    one line each time a stage actually runs (resume audit)

A stage is done when its `stage.json` exists (written last, atomically); a done stage is
skipped, so a killed sweep re-run does only what is missing. A lock per stage makes parallel
jobs that need the same artifact (the dense images) wait for one producer instead of racing.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from experiments.results import file_lock
from skrr.plan import Plan, write_json_atomic

DONE = "stage.json"
TEXT_METRICS = ("fid", "clip", "dreamsim")
# eval.prompts keys that switch each prompt set on (setting them to None switches it off)
SET_SWITCHES = {"text": ("text", "coco_captions", "toyworld_text"),
                "geneval": ("geneval_metadata", "geneval_generated", "toyworld_geneval")}


def plain(cfg):
    """Configs (also nested in dicts and lists) as plain JSON-able containers."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, dict):
        return {k: plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [plain(v) for v in cfg]
    return cfg


def digest(*parts) -> str:
    """Stable 16-hex hash of JSON-able parts (configs are resolved first)."""
    blob = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class Store:
    """The artifact root. `run(kind, key, fn, inputs)` does fn(dir) once per (kind, key)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def record(self, kind: str, key: str) -> dict | None:
        path = self.dir(kind, key) / DONE
        return json.loads(path.read_text()) if path.is_file() else None

    def run(self, kind: str, key: str, fn, inputs=None) -> dict:
        """The stage's record; `ran` says whether fn ran in this call."""
        rec = self.record(kind, key)
        if rec is None:
            out = self.dir(kind, key)
            out.mkdir(parents=True, exist_ok=True)
            with file_lock(out):
                rec = self.record(kind, key)  # a parallel job may have finished it while we waited
                if rec is None:
                    start = time.perf_counter()
                    result = fn(out)
                    rec = {"stage": kind, "key": key, "seconds": time.perf_counter() - start,
                           "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "inputs": plain(inputs),
                           "output": result}
                    write_json_atomic(out / DONE, rec)
                    with file_lock(self.root / "stage_log.jsonl"), open(self.root / "stage_log.jsonl", "a") as f:
                        f.write(json.dumps({"stage": kind, "key": key, "seconds": rec["seconds"],
                                            "finished_at": rec["finished_at"]}) + "\n")
                    return {**rec, "ran": True}
        return {**rec, "ran": False}

    def run_sharded(self, kind: str, key: str, work, finish, inputs=None, rank: int = 0, world_size: int = 1,
                    poll: float = 1.0) -> dict:
        """A stage split across ranks (torchrun): every rank does work(dir, rank, world_size) on its
        shard; rank 0 waits for all shards, then finish(dir) and the record; other ranks wait for it."""
        if world_size == 1:
            return self.run(kind, key, lambda out: (work(out, 0, 1), finish(out))[1], inputs)
        rec = self.record(kind, key)
        if rec is not None:
            return {**rec, "ran": False}
        out = self.dir(kind, key)
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        work(out, rank, world_size)
        (out / f".shard{rank}.done").touch()
        if rank == 0:
            while not all((out / f".shard{r}.done").is_file() for r in range(world_size)):
                time.sleep(poll)
            rec = self.run(kind, key, finish, {**(plain(inputs) or {}), "world_size": world_size})
            for r in range(world_size):
                (out / f".shard{r}.done").unlink(missing_ok=True)
            return {**rec, "seconds": time.perf_counter() - start}
        while self.record(kind, key) is None:
            time.sleep(poll)
        return {**self.record(kind, key), "ran": True}


# --- plans ---------------------------------------------------------------------------
def plan_key(model_cfg, method_cfg, calibration_cfg, targets: list[float]) -> str:
    method = {**plain(method_cfg), "sparsity": sorted(targets)}
    # dense needs no calibration: its plan must not depend on one
    return digest("plan", model_cfg, method, None if method["name"] == "dense" else calibration_cfg)


def plan_file(target: float) -> str:
    return f"plan_{target:.4f}.json"


def make_plans(out: Path, model_cfg, method_cfg, calibration_cfg, targets, device: str, progress: bool) -> dict:
    """Prune once for every target and write one plan file per target (+ changed weights)."""
    if method_cfg.name == "dense":
        plans = [Plan(skip=[], method=plain(method_cfg), sparsity=0.0, info={"target": 0.0})]
    else:
        from skrr.prune import prune

        method = OmegaConf.merge(method_cfg, {"sparsity": list(targets)})
        plans = prune(model_cfg, method, calibration_cfg, device=device, progress=progress)
    files = {}
    for plan in plans:
        name = plan_file(plan.info["target"])
        plan.save(out / name)  # with LaCo's merged weights beside it
        files[f"{plan.info['target']:.4f}"] = name
    return {"plans": files}


def plan_identity(plan: Plan, plan_dir: Path | None) -> dict:
    """What the images depend on: the skipped and re-used sub-blocks and any changed weights."""
    weights = file_digest(plan_dir / plan.weights) if plan.weights else None
    return {"skip": sorted(plan.skip), "reuse": {str(k): v for k, v in sorted(plan.reuse.items())}, "weights": weights}


DENSE = {"skip": [], "reuse": {}, "weights": None}


# --- pipelines -----------------------------------------------------------------------
def load_run_pipeline(model_cfg, eval_cfg, plan: Plan | None = None, plan_dir: Path | None = None):
    """The model's pipeline with its text encoder pruned in place by `plan` (None: dense)."""
    import torch

    from skrr import apply_plan
    from skrr.models import DTYPES, load_pipeline

    dtype = DTYPES[eval_cfg.dtype] if eval_cfg.get("dtype") else None
    pipe = load_pipeline(model_cfg, device=local_device(eval_cfg.device), dtype=dtype)
    if plan is not None and (plan.skip or plan.weights):
        with torch.no_grad():
            apply_plan(getattr(pipe, model_cfg.text_encoder), plan, weights_dir=plan_dir)
    return pipe


class LazyPipeline:
    """Loads the pipeline on first use only, so a fully cached run never loads a model."""

    def __init__(self, load):
        self._load, self._pipe = load, None

    def get(self):
        if self._pipe is None:
            self._pipe = self._load()
        return self._pipe

    def release(self):
        if self._pipe is not None:
            import gc

            import torch

            self._pipe = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


# --- images and metrics ----------------------------------------------------------------
def needed_sets(metrics) -> list[str]:
    sets = ["text"] if any(m in TEXT_METRICS for m in metrics) else []
    return sets + (["geneval"] if "geneval" in metrics else [])


def only_set(eval_cfg, keep: str | None):
    """eval_cfg with every prompt set but `keep` switched off (None: no prompts at all)."""
    cfg = OmegaConf.create(plain(eval_cfg))
    for name, keys in SET_SWITCHES.items():
        if name != keep:
            for k in keys:
                cfg.prompts[k] = None
    return cfg


def images_key(model_cfg, identity: dict, eval_cfg, sets: dict) -> str:
    """Key of the images folder (one sub-folder per prompt set, each its own stage `<key>/<set>`)."""
    return digest("images", model_cfg, identity, eval_cfg.sampler, eval_cfg.get("dtype"), sets)


def texts_of(prompts: list) -> list[str]:
    return [p["prompt"] if isinstance(p, dict) else p for p in prompts]


def generate_shard(out: Path, pipe: LazyPipeline, sampler, prompts: list, rank: int, world_size: int,
                   twin: Path | None = None) -> None:
    """This rank's missing images (all of them when world_size is 1); loads the pipeline only if any are missing.
    `twin`: a finished set of the same prompts, seeds and sampler, whose images are linked instead."""
    from eval import generate as gen

    texts = texts_of(prompts)
    if twin is not None:
        rows = [json.loads(line) for line in (twin / gen.METADATA).read_text().splitlines()]
        with open(out / f"metadata.rank{rank}.jsonl", "w") as f:
            for i in range(rank, len(texts), world_size):
                f.write(json.dumps(rows[i]) + "\n")
                if not (out / gen.image_name(i)).exists():
                    os.link(twin / gen.image_name(i), out / gen.image_name(i))
        return
    if any(not (out / gen.image_name(i)).exists() for i in range(rank, len(texts), world_size)):
        gen.generate(pipe.get(), texts, out, gen.SamplerConfig(**sampler), rank=rank, world_size=world_size)


def merge_set(out: Path, prompts: list) -> dict:
    from eval import generate as gen

    gen.merge(out, len(prompts))
    return {"num_images": len(prompts)}


def local_device(device: str) -> str:
    """cuda -> cuda:<LOCAL_RANK> under torchrun, so each rank uses its own GPU."""
    if str(device) == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return str(device)


def compute_metric(name: str, eval_cfg, pipe: LazyPipeline, images_root: Path, dense_text: Path | None):
    """One metric through eval.run.evaluate, with only the prompt set it reads."""
    from eval.run import evaluate

    import torch

    keep = {"geneval": "geneval", "efficiency": None}.get(name, "text")
    cfg = OmegaConf.merge(only_set(eval_cfg, keep), {"metrics": [name]})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # same RNG state for every run and process: tiny evals build random backbones
        return evaluate(cfg, pipe.get(), images_root, dense_dir=dense_text)[name]


def fid_reference(out: Path, dense_text: Path) -> dict:
    """Tiny evals have no COCO statistics: the dense images are the FID reference (dense FID = 0)."""
    from eval.fid import build_reference_stats
    from eval.tiny import TinyFeatureNet

    path = build_reference_stats(dense_text, out / "fid_ref.npz", feature_extractor=TinyFeatureNet())
    return {"reference_stats": str(path)}
