"""The metric interface and the folder scorer.

A metric is a `torchmetrics.Metric` built by Hydra from `conf/metrics/<metric>/<option>.yaml`
(`_target_`), so `metrics.fid.reference_stats=PATH` or `metrics/fid=toyworld` work on the command
line. `update(images, prompts, dense=None)` takes a batch of images, their prompts (strings;
GenEval metadata dicts for GenEval) and, where the metric compares with the dense model, the dense
images of the same prompts and seeds; `compute()`, `reset()`, `forward`, `MetricCollection` and
`sync` are torchmetrics' own, because every state is declared with `add_state` (tensors, or "cat"
lists of tensors that distributed sync concatenates in rank order).

Per-image scores, the contract `skrr.eval.per_item` reads (nothing else):

    item_scores       a "cat" state on every metric: one row per image, in update order; a score
                      (N,) or, for item_kind "fid", the image's feature vector (N, D)
    item_kind         "mean" (the value is the mean of the scores), "fid" (the Frechet distance of
                      the features to `reference`), or None (no per-image scores)
    item_strata       (GenEval) a "cat" state: each image's stratum, an index into `strata_names`;
                      the value is then the mean of the stratum means
    resample          the bootstrap unit: "prompt" (a prompt's images resample together) or "image"
    reference         (item_kind "fid") {"mu", "sigma"} the features are compared with, or None

What else the runner reads is declared on the class, so no caller switches on a metric's name:

    prompt_set        the prompt set whose images it scores: "text", "geneval", "geneval2", or None (no images)
    needs_pipeline    it is built with the pipeline itself (`pipeline=`): a report of the pipeline
                      such as skrr.experiments.runner.efficiency.Efficiency, which shares this contract without
                      being a metric of images
    needs_dense(cfg)  whether update needs the dense images (DreamSim; FID without reference stats)
    validate(cfg)     cheap config checks, run before anything heavy loads (check_metric also
                      checks every key of the config against the constructor)
    intervals(clusters, resamples, seed)
                      (optional, GenEval 2) every number of compute() with its interval, from the
                      metric's own states; the stored result is then one {"value", "ci"} per number
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchmetrics
from torchmetrics.utilities import dim_zero_cat

from skrr.config.build import build, check_keys, target_class
from skrr.errors import InputError
from skrr.eval.images import list_images, load_images
from skrr.search.finite import check_finite


class Metric(torchmetrics.Metric):
    prompt_set: str | None = "text"
    needs_pipeline = False
    batch_size = 16
    item_kind: str | None = "mean"
    resample = "prompt"
    strata_names: tuple[str, ...] | None = None
    reference: dict | None = None
    full_state_update = False  # update only appends: forward may reduce a batch's state into the total

    def __init__(self):
        super().__init__()
        self.add_state("item_scores", [], dist_reduce_fx="cat")

    @classmethod
    def needs_dense(cls, cfg) -> bool:
        return False

    @classmethod
    def validate(cls, cfg) -> None:
        """Raise skrr.errors.InputError naming the fix when cfg cannot work (before any model loads)."""

    def item_tensor(self) -> torch.Tensor:
        """item_scores as one tensor (N,) or (N, D); empty before any update."""
        return dim_zero_cat(self.item_scores) if len(self.item_scores) else torch.zeros(0, dtype=torch.float64)


def metric_class(cfg, name: str = "metric") -> type:
    """The class a metric config builds, imported without building it."""
    return target_class(cfg, f"metrics.{name}")


def check_metric(name: str, cfg) -> type:
    """Every key of `metrics.<name>` is a constructor argument (a typo fails here, named in full:
    `metrics.clip.batchsize`), then the class's own cheap checks; nothing is built."""
    cls = metric_class(cfg, name)
    check_keys(cls, list(cfg.keys()), f"metrics.{name}", given=("pipeline",) if cls.needs_pipeline else ())
    cls.validate(cfg)
    return cls


def build_metric(cfg, name: str = "metric", **kwargs):
    return build(cfg, f"metrics.{name}", **kwargs)


def load_folder(image_dir, expected: int, indices=None) -> list[Path]:
    """The folder's images, checked to number exactly `expected` (one per prompt index); with
    `indices`, the images of those prompt indices (a share of the set), each checked to exist."""
    if indices is not None:
        from skrr.eval.generate import image_name

        files = [Path(image_dir) / image_name(i) for i in indices]
        absent = [f.name for f in files if not f.is_file()]
        if absent or len(files) != expected:
            raise InputError(f"{image_dir} lacks {len(absent)} of the {len(files)} images of its share (first "
                             f"{absent[:3]}), or the share has {len(files)} for {expected} prompts; re-run generation")
        return files
    files = list_images(image_dir)
    if len(files) != expected:
        raise InputError(f"{image_dir} holds {len(files)} images but the prompt set has {expected}; "
                         "finish generation (it resumes) or point at the right folder")
    return files


def computed(metric, name: str | None = None):
    """metric.compute(), refused (NotFinite, one line) if any number in it is NaN or inf."""
    name = name or type(metric).__name__
    return check_finite(metric.compute(), f"metric {name}",
                        f"the metrics.{name} settings (a backbone in the wrong dtype, a zero-variance reference) "
                        "or blank/NaN images from the sampler (eval.dtype, eval.sampler)")


def score_folder(metric: Metric, image_dir, prompts: list, dense_dir=None, name: str | None = None, indices=None):
    """Feed a folder of images (and the dense images of the same prompts, if given) to a metric in
    batches of metric.batch_size; returns its finite value (see `computed`). `indices`: score only
    the images of those prompt indices (a share of the set; `prompts` are theirs)."""
    files = load_folder(image_dir, len(prompts), indices)
    dense = load_folder(dense_dir, len(prompts), indices) if dense_dir is not None else None
    for start in range(0, len(files), metric.batch_size):
        end = start + metric.batch_size
        metric.update(load_images(files[start:end]), prompts[start:end],
                      dense=load_images(dense[start:end]) if dense is not None else None)
    return computed(metric, name)
