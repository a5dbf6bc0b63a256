"""The stages of skrr-run, each a small object with explicit inputs, and the store of their
content-addressed artifacts under one root (`paths.root`, default runs/):

    plans/<key>/plan_<target>.json     Plans:  model + method cfg (all targets) + calibration cfg
    discrepancy/<key>/                 PlanD:  the plans' D on Skrr's default yardstick (skrr.experiments.runner.plan_d)
    images/<key>/<set>/00000.png ...   Images: model + plan identity (skip, reuse, weights) + sampler + prompts
    metrics/<key>/                     Score:  metric cfg + the images it reads (+ the dense images)
    stage_log.jsonl                    one line each time a stage actually runs (resume audit)

A stage is done when its `stage.json` exists (written last, atomically) and the files it lists
are intact; a done stage is skipped, so a killed sweep re-run does only what is missing, and a
damaged artifact (a truncated image, a deleted plan) is made again. A lock per stage makes parallel
jobs that need the same artifact (the dense images) wait for one producer instead of racing.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from skrr.config.legacy import key_names
from skrr.eval.prompts import texts_of
from skrr.experiments.runner.results import file_lock
from skrr.methods import Method
from skrr.plan import Plan, plan_file_name, write_json_atomic

DONE = "stage.json"
METRIC_FORMAT = 2  # in metric keys: version 2 stores per-image scores and intervals (older stages are redone)
DENSE = {"skip": [], "reuse": {}, "weights": None}  # the plan identity of the dense model
log = logging.getLogger("skrr-run")


def plain(cfg):
    """Configs (also nested in dicts and lists) as plain JSON-able containers."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True)
    if isinstance(cfg, dict):
        return {k: plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [plain(v) for v in cfg]
    return cfg


def settings_of(cfg: dict) -> dict:
    """A pluggable part's settings: its config without the class it builds (`_target_`), so cache
    keys depend on what is computed, not on where the class lives."""
    return {k: v for k, v in cfg.items() if k != "_target_"}


def digest(*parts) -> str:
    """Stable 16-hex hash of JSON-able parts (configs are resolved first)."""
    # class names as before the re-layout (skrr.config.legacy): a store written then keeps its keys
    blob = json.dumps([key_names(plain(p)) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def written(out: Path) -> dict[str, list]:
    """{relative path: [size, content hash]} of the files a stage wrote (temporaries and locks excluded)."""
    files = {}
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_file() and rel != DONE and not path.name.startswith(".") and path.suffix not in (".lock", ".tmp"):
            files[rel] = [path.stat().st_size, file_digest(path)]
    return files


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


class Store:
    """The artifact root, and the one place stage artifacts are written and checked.

    `run(kind, key, fn, inputs)` does fn(dir) once per (kind, key). The stage's `stage.json` lists
    every file fn wrote, with its size and content hash. Reuse checks that each is there with its
    size every time (cheap) and, with `verify`, its hash; a stage with a missing or damaged file
    drops those files and its record and runs again (a resuming stage, like images, redoes only them).
    """

    def __init__(self, root: str | os.PathLike, verify: bool = False):
        self.root, self.verify = Path(root), verify
        self._remade: dict[tuple[str, str], dict] = {}  # what a reuse check found, for the stage log

    def dir(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def record(self, kind: str, key: str) -> dict | None:
        path = self.dir(kind, key) / DONE
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except ValueError:  # a damaged record: not done (`reusable` names it and removes it)
            return None

    def damaged(self, kind: str, key: str, record: dict) -> dict[str, str]:
        """{file: what is wrong} for the files the record lists (empty: all intact)."""
        out, bad = self.dir(kind, key), {}
        for name, (size, content) in record.get("files", {}).items():
            path = out / name
            if not path.is_file():
                bad[name] = "missing"
            elif path.stat().st_size != size:
                bad[name] = f"has {path.stat().st_size} bytes, {size} written"
            elif self.verify and file_digest(path) != content:
                bad[name] = "content changed (hash differs)"
        return bad

    def reusable(self, kind: str, key: str) -> dict | None:
        """The stage's record if all it wrote is intact, else None: the damaged files and the record
        are removed (and named in the log), so the stage runs again. Call under the stage's lock."""
        out = self.dir(kind, key)
        if not (out / DONE).is_file():
            return None
        rec = self.record(kind, key)
        bad = {DONE: "unreadable"} if rec is None else self.damaged(kind, key, rec)
        if not bad:
            return rec
        log.warning("%s/%s: %s; making it again", kind, key, ", ".join(f"{n} {why}" for n, why in bad.items()))
        for name in bad:
            (out / name).unlink(missing_ok=True)
        (out / DONE).unlink(missing_ok=True)
        self._remade[(kind, key)] = bad
        return None

    def run(self, kind: str, key: str, fn, inputs=None) -> dict:
        """The stage's record; `ran` says whether fn ran in this call."""
        out = self.dir(kind, key)
        with file_lock(out):  # a parallel job producing it makes us wait, then we reuse its work
            rec = self.reusable(kind, key)
            if rec is not None:
                return {**rec, "ran": False}
            made = not out.is_dir()
            out.mkdir(parents=True, exist_ok=True)
            start = time.perf_counter()
            try:
                result = fn(out)
            except BaseException as e:
                if isinstance(e, KeyboardInterrupt) and getattr(e, "stage", None) is None:
                    e.stage = f"{kind}/{key}"  # Ctrl-C / SIGTERM: say where (the innermost stage)
                if made and not any(out.iterdir()):  # a failed first attempt leaves no empty folder
                    out.rmdir()
                raise
            rec = {"stage": kind, "key": key, "seconds": time.perf_counter() - start,
                   "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "inputs": plain(inputs),
                   "output": result, "files": written(out)}
            write_json_atomic(out / DONE, rec)
            entry = {"stage": kind, "key": key, "seconds": rec["seconds"], "finished_at": rec["finished_at"]}
            if (kind, key) in self._remade:
                entry["remade"] = self._remade.pop((kind, key))
            with file_lock(self.root / "stage_log.jsonl"), open(self.root / "stage_log.jsonl", "a") as f:
                f.write(json.dumps(entry) + "\n")
            return {**rec, "ran": True}

    def run_sharded(self, kind: str, key: str, work, finish, inputs=None, rank: int = 0, world_size: int = 1,
                    poll: float = 1.0) -> dict:
        """A stage split across ranks (torchrun): every rank does work(dir, rank, world_size) on its
        shard; rank 0 waits for all shards, then finish(dir) and the record; other ranks wait for it."""
        if world_size == 1:
            return self.run(kind, key, lambda out: (work(out, 0, 1), finish(out))[1], inputs)
        out = self.dir(kind, key)
        with file_lock(out):  # every rank checks; the first to find damage clears it for all
            rec = self.reusable(kind, key)
        if rec is not None:
            return {**rec, "ran": False}
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


plan_file = plan_file_name  # the one format, shared with skrr-prune (skrr.plan)


def plan_identity(plan: Plan, plan_dir: Path | None) -> dict:
    """What the images depend on: the skipped and re-used sub-blocks and any changed weights."""
    weights = file_digest(plan_dir / plan.weights) if plan.weights else None
    return {"skip": sorted(plan.skip), "reuse": {str(k): v for k, v in sorted(plan.reuse.items())}, "weights": weights}


@dataclass(frozen=True)
class Plans:
    """Prune once for every target: one plan file per target (+ LaCo's changed weights)."""
    model: dict
    method: Method  # built once by the job, with `targets` as its sparsity: what the search runs
    method_config: dict  # as composed: what the key hashes
    calibration: dict
    targets: tuple[float, ...]

    @property
    def settings(self) -> dict:
        """The method's settings as composed (what a dense plan records, what the key hashes)."""
        return self.method.recorded(settings_of(self.method_config))

    @property
    def key(self) -> str:
        method = {**self.settings, "sparsity": sorted(self.targets)}
        # quantization comes after pruning: plans for a quantized run are the unquantized run's
        model = {k: v for k, v in self.model.items() if k not in ("quantize", "quantize_backend")}
        # a method that prunes nothing needs no calibration: its plan must not depend on one
        return digest("plan", model, method, settings_of(self.calibration) if self.method.prunes else None)

    def run(self, store: Store, device: str, progress: bool) -> dict:
        inputs = {"model": self.model, "method": self.method_config, "calibration": self.calibration,
                  "targets": self.targets}
        return store.run("plans", self.key, partial(self.make, device=device, progress=progress), inputs)

    def make(self, out: Path, device: str, progress: bool) -> dict:
        if not self.method.prunes:  # nothing to search: no model or calibration loads
            plans = [Plan(skip=[], method=self.settings, sparsity=0.0, info={"target": 0.0})]
        else:
            from skrr.prune import prune

            plans = prune(OmegaConf.create(self.model), self.method, OmegaConf.create(self.calibration), device=device,
                          progress=progress)
        files = {}
        for plan in plans:
            plan.save(out / plan_file(plan.info["target"]))  # with LaCo's merged weights beside it
            files[f"{plan.info['target']:.4f}"] = plan_file(plan.info["target"])
        return {"plans": files}

    @staticmethod
    def files(store: Store, key: str, record: dict) -> list[tuple[float, Path]]:
        """(target, plan file) of a finished plans stage."""
        return [(float(t), store.dir("plans", key) / name) for t, name in record["output"]["plans"].items()]


@dataclass(frozen=True)
class PlanD:
    """Every plan of a Plans stage scored with Skrr's default D on the run's calibration set: the
    same yardstick for every method, so a report can ask whether D predicts image quality."""
    model: dict
    calibration: dict
    plans_key: str

    @property
    def key(self) -> str:
        from skrr.experiments.runner.plan_d import SETTINGS

        model = {k: v for k, v in self.model.items() if k not in ("quantize", "quantize_backend")}
        return digest("discrepancy", model, settings_of(self.calibration), self.plans_key, SETTINGS)

    def run(self, store: Store, plans: list[tuple[float, Path]], device: str) -> dict:
        from skrr.experiments.runner.plan_d import plan_discrepancies

        return store.run("discrepancy", self.key,
                         lambda out: {"d": plan_discrepancies(self.model, self.calibration, plans, device)},
                         {"model": self.model, "calibration": self.calibration, "plans": self.plans_key})


class Pipeline:
    """The model's pipeline with its text encoder pruned by `plan` (None: dense), loaded on first
    use only, so a fully cached run never loads a model."""

    def __init__(self, model: dict, device: str, dtype: str | None, plan: Plan | None = None,
                 plan_dir: Path | None = None):
        self.model, self.device, self.dtype, self.plan, self.plan_dir = model, device, dtype, plan, plan_dir
        self._pipe = None

    def get(self):
        if self._pipe is None:
            self._pipe = load_run_pipeline(self.model, self.device, self.dtype, self.plan, self.plan_dir)
        return self._pipe

    def release(self) -> None:
        if self._pipe is not None:
            import gc

            import torch

            self._pipe = None
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def load_run_pipeline(model: dict, device: str, dtype: str | None, plan: Plan | None, plan_dir: Path | None):
    """The pipeline pruned by `plan` (one that skips nothing and changes no weight: the dense pipeline
    as loaded), then its kept encoder weights quantized if the model asks for it."""
    from skrr.models import load_pipeline
    from skrr.search.compute import DTYPES

    changes = plan is not None and (plan.skip or plan.weights)
    pipe = load_pipeline(OmegaConf.create(model), device=device, dtype=DTYPES[dtype] if dtype else None,
                         plan=plan if changes else None, plan_dir=plan_dir)
    from skrr.encoders.quantize import quantize_encoder, settings

    scheme, backend = settings(model)
    if scheme != "none":  # after pruning: only the kept weights are quantized
        quantize_encoder(getattr(pipe, model["text_encoder"]), scheme, backend, device)
    return pipe


@dataclass(frozen=True)
class Images:
    """One prompt set's images of one plan: images/<key>/<set>/, sharded over torchrun ranks.
    `key` covers every prompt set of the run, so all sets of a plan share one folder. A share of a
    set (`fraction` < 1: whole chunks, skrr.eval.generate.chunks_for) is made in that same folder,
    and its stage, images/<key>/<set>.part<m>of<n>/, holds only the share's metadata: a larger share
    or the whole set later reuses every image already made."""
    model: dict
    identity: dict
    sampler: dict
    dtype: str | None
    sets: dict

    @property
    def key(self) -> str:
        return digest("images", self.model, self.identity, self.sampler, self.dtype, self.sets)

    def folder(self, store: Store, set_name: str) -> Path:
        return store.dir("images", self.key) / set_name

    def part(self, set_name: str, fraction: float) -> Part:
        """The share of a set that `fraction` takes (Part.whole: all of it)."""
        from skrr.eval.generate import chunks_for, num_chunks

        n, batch = len(self.sets[set_name]), int(self.sampler["batch_size"])
        return Part(set_name, n, batch, chunks_for(fraction, n, batch), num_chunks(n, batch))

    def metadata(self, store: Store, part: Part) -> Path:
        """The metadata.jsonl of the share's images (the whole set's lies in its image folder)."""
        from skrr.eval.generate import METADATA

        return (self.folder(store, part.set_name) if part.whole else self.stage_dir(store, part)) / METADATA

    def stage_dir(self, store: Store, part: Part) -> Path:
        return store.dir("images", f"{self.key}/{part.stage_name}")

    def run(self, store: Store, set_name: str, pipeline: Pipeline, rank: int, world_size: int,
            twin: tuple[Path, Path] | None = None, fraction: float = 1.0) -> dict:
        """`twin`: (image folder, metadata file) of a finished share of the same prompts, seeds and
        sampler (another set's) whose images are linked instead."""
        prompts = texts_of(self.sets[set_name])
        part = self.part(set_name, fraction)
        folder = self.folder(store, set_name)
        work = partial(generate_shard, pipeline=pipeline, sampler=self.sampler, prompts=prompts, twin=twin,
                       only=part.chunks, folder=folder)
        inputs = {"model": self.model, "plan": self.identity, "sampler": self.sampler}
        if not part.whole:
            inputs["chunks"] = part.chunks
            self.heal_share(store, part, folder)
        return store.run_sharded("images", f"{self.key}/{part.stage_name}", work,
                                 partial(merge_set, num_prompts=len(prompts), indices=part.indices, folder=folder),
                                 inputs, rank, world_size)

    def heal_share(self, store: Store, part: Part, folder: Path) -> None:
        """A share's stage lists only its metadata; its images lie in the set's folder. One of them
        missing (deleted, or a damaged whole-set stage removed it) makes the share's stage run again."""
        from skrr.eval.generate import image_name

        done = self.stage_dir(store, part) / DONE
        missing = [i for i in part.indices if not (folder / image_name(i)).is_file()] if done.is_file() else []
        if missing:
            log.warning("images/%s/%s: %d images of the share missing (first %s); making them again", self.key,
                        part.stage_name, len(missing), image_name(missing[0]))
            done.unlink(missing_ok=True)


@dataclass(frozen=True)
class Part:
    """A share of a prompt set: the chunks it takes (None: all of them)."""
    set_name: str
    num_prompts: int
    batch_size: int
    chunks: list[int] | None
    total_chunks: int

    @property
    def whole(self) -> bool:
        return self.chunks is None

    @property
    def indices(self) -> list[int] | None:
        """The prompt indices of the share, sorted (None: all)."""
        from skrr.eval.generate import share

        return None if self.whole else share(0, 1, self.num_prompts, self.batch_size, self.chunks)

    @property
    def size(self) -> int:
        return self.num_prompts if self.whole else len(self.indices)

    @property
    def stage_name(self) -> str:
        return self.set_name if self.whole else f"{self.set_name}.part{len(self.chunks)}of{self.total_chunks}"


def generate_shard(out: Path, rank: int, world_size: int, pipeline: Pipeline, sampler: dict, prompts: list[str],
                   twin: tuple[Path, Path] | None, only: list[int] | None, folder: Path) -> None:
    """This rank's missing images of the chunks taken, in `folder` (the set's image folder; `out` is
    the stage's, the same folder for a whole set); loads the pipeline only if any are missing."""
    from skrr.eval import generate as gen

    cfg = gen.SamplerConfig(**sampler)
    mine = gen.share(rank, world_size, len(prompts), cfg.batch_size, only)
    folder.mkdir(parents=True, exist_ok=True)
    if twin is not None:
        twin_folder, twin_metadata = twin
        rows = {row["index"]: row for row in map(json.loads, twin_metadata.read_text().splitlines())}
        with open(folder / f"metadata.rank{rank}.jsonl", "a") as f:  # merge keeps one row per index
            for i in mine:
                f.write(json.dumps(rows[i]) + "\n")
                if not (folder / gen.image_name(i)).exists():
                    os.link(twin_folder / gen.image_name(i), folder / gen.image_name(i))
        return
    if any(not (folder / gen.image_name(i)).exists() for i in mine):
        gen.generate(pipeline.get(), prompts, folder, cfg, rank=rank, world_size=world_size, only=only)


def merge_set(out: Path, num_prompts: int, indices: list[int] | None, folder: Path) -> dict:
    from skrr.eval import generate as gen

    gen.merge(folder, num_prompts, indices, into=out)
    return {"num_images": num_prompts if indices is None else len(indices)}


@dataclass(frozen=True)
class Score:
    """One metric's value: a folder of images (and the dense folder) through the metric, or, for a
    metric that reads no images (efficiency), the pipeline itself. `depends`: what the value is a
    function of besides the metric config (images keys, or the plan for efficiency)."""
    name: str
    config: dict
    depends: dict
    images: Path | None = None
    prompts: tuple = ()  # of the images scored: a share's (`indices`) or the whole set's
    dense: Path | None = None
    indices: tuple | None = None  # a share of the set: the image indices scored (None: all)
    metadata: Path | None = None  # the scored images' metadata.jsonl (None: the folder's own)

    @property
    def key(self) -> str:
        return digest("metric", self.name, self.config, self.depends, METRIC_FORMAT)

    def run(self, store: Store, pipeline: Pipeline | None = None) -> dict:
        return store.run("metrics", self.key, partial(self.compute, pipeline=pipeline),
                         {"metric": self.name, **self.depends})

    def compute(self, out: Path, pipeline: Pipeline | None) -> dict:
        import torch

        from skrr.eval.metrics import build_metric, computed, metric_class, score_folder

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # same RNG state in every run and process: tiny evals build random backbones
            extra = {"pipeline": pipeline.get()} if metric_class(self.config, self.name).needs_pipeline else {}
            metric = build_metric(self.config, self.name, **extra)
            if self.images is None:
                return {"value": computed(metric, self.name)}
            value = score_folder(metric, self.images, list(self.prompts), self.dense, self.name, self.indices)
        # per-image scores keyed by prompt and seed: the value's 95% interval, and pairing in skrr-report
        from skrr.eval.per_item import from_metric, summary, with_seeds

        items = from_metric(metric, list(self.prompts))
        if items is None:
            return {"value": value}
        with_seeds(items, self.images, self.metadata).save(out / "items.npz")
        return {"value": summary(value, items, metric=metric), "items": "items.npz"}
