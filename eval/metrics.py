"""The metric interface and the folder scorer.

A metric is a class built by Hydra from `conf/metrics/<metric>/<option>.yaml` (`_target_`), so
`metrics.fid.reference_stats=PATH` or `metrics/fid=toyworld` work on the command line. Every
metric follows torchmetrics: `update(images, prompts, dense=None)` with a batch of images, their
prompts (strings; GenEval metadata dicts for GenEval) and, where the metric compares with the dense
model, the dense images of the same prompts and seeds; then `compute()` and `reset()`.
What a metric reads is declared on its class, so no caller switches on a metric's name:

    prompt_set        the prompt set whose images it scores: "text", "geneval", or None (no images)
    needs_pipeline    it is built with the pipeline itself (`pipeline=`): efficiency
    needs_dense(cfg)  whether update needs the dense images (DreamSim; FID without reference stats)
    validate(cfg)     cheap config checks, run before anything heavy loads
"""
from __future__ import annotations

from pathlib import Path

from hydra.utils import get_class, instantiate

from eval.images import list_images, load_images
from skrr.errors import InputError
from skrr.finite import check_finite


class Metric:
    prompt_set: str | None = "text"
    needs_pipeline = False
    batch_size = 16

    @classmethod
    def needs_dense(cls, cfg) -> bool:
        return False

    @classmethod
    def validate(cls, cfg) -> None:
        """Raise ValueError naming the fix when cfg cannot work (before any model loads)."""

    def update(self, images, prompts: list, dense=None) -> None:
        raise NotImplementedError

    def compute(self):
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError


def metric_class(cfg) -> type:
    """The class a metric config builds, imported without building it."""
    return get_class(cfg["_target_"])


def build_metric(cfg, **kwargs) -> Metric:
    return instantiate(cfg, **kwargs)


def load_folder(image_dir, expected: int) -> list[Path]:
    """The folder's images, checked to number exactly `expected` (one per prompt index)."""
    files = list_images(image_dir)
    if len(files) != expected:
        raise InputError(f"{image_dir} holds {len(files)} images but the prompt set has {expected}; "
                         "finish generation (it resumes) or point at the right folder")
    return files


def computed(metric: Metric, name: str | None = None):
    """metric.compute(), refused (NotFinite, one line) if any number in it is NaN or inf."""
    name = name or type(metric).__name__
    return check_finite(metric.compute(), f"metric {name}",
                        f"the metrics.{name} settings (a backbone in the wrong dtype, a zero-variance reference) "
                        "or blank/NaN images from the sampler (eval.dtype, eval.sampler)")


def score_folder(metric: Metric, image_dir, prompts: list, dense_dir=None, name: str | None = None):
    """Feed a folder of images (and the dense images of the same prompts, if given) to a metric in
    batches of metric.batch_size; returns its finite value (see `computed`)."""
    files = load_folder(image_dir, len(prompts))
    dense = load_folder(dense_dir, len(prompts)) if dense_dir is not None else None
    for start in range(0, len(files), metric.batch_size):
        end = start + metric.batch_size
        metric.update(load_images(files[start:end]), prompts[start:end],
                      dense=load_images(dense[start:end]) if dense is not None else None)
    return computed(metric, name)
