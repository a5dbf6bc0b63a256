"""A metric's per-image scores, saved beside its result so a report can bootstrap them and pair two
methods image by image (same prompt, same seed).

    items = Items.mean(scores, keys, clusters=prompts, strata=tags)   # GenEval, similarity, CLIP
    items = Items.fid(features, keys, prompts, reference)             # FID: features, not scores
    items.save(dir / "items.npz"); Items.load(path).interval()

`kind` says how the metric follows from the rows: "mean" is the stratum-balanced mean of `values`
(one stratum: the plain mean; GenEval: mean of the task accuracies), "fid" the Frechet distance of
the rows' features to the reference's mean and covariance.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torchmetrics.utilities import dim_zero_cat

from skrr.errors import InputError, MissingFile
from skrr.eval.intervals import LEVEL, RESAMPLES, Interval, balanced_mean, bootstrap_mean, bootstrap_statistic

KINDS = ("mean", "fid")
FID_RESAMPLES = 500  # each FID resample is a matrix square root; 500 keep the percentiles to ~1% of the width


def item_keys(prompts, seeds) -> list[str]:
    """What makes two images the same item for pairing: the prompt and the generator seed."""
    return [f"{int(s)}|{p}" for p, s in zip(prompts, seeds)]


@dataclass
class Items:
    kind: str
    keys: np.ndarray            # (N,) str
    values: np.ndarray          # (N,) scores or (N, D) features
    clusters: np.ndarray        # (N,) str: the prompt; its images resample together
    strata: np.ndarray | None = None    # (N,) str: GenEval's task
    reference: dict | None = None       # fid: {"mu", "sigma"}

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InputError(f"unknown per-item kind {self.kind!r}; use one of {KINDS}")
        n = len(self.values)
        if len(self.keys) != n or len(self.clusters) != n or (self.strata is not None and len(self.strata) != n):
            raise InputError(f"per-item arrays differ in length: {n} values, {len(self.keys)} keys, "
                             f"{len(self.clusters)} clusters")
        if self.kind == "fid" and self.reference is None:
            raise InputError("FID items need the reference statistics (mu, sigma)")

    @classmethod
    def mean(cls, values, keys, clusters=None, strata=None) -> Items:
        keys = np.asarray(keys, dtype=str)
        return cls("mean", keys, np.asarray(values, dtype=np.float64),
                   keys if clusters is None else np.asarray(clusters, dtype=str),
                   None if strata is None else np.asarray(strata, dtype=str))

    @classmethod
    def fid(cls, features, keys, clusters, reference: dict) -> Items:
        return cls("fid", np.asarray(keys, dtype=str), np.asarray(features, dtype=np.float64),
                   np.asarray(clusters, dtype=str), None,
                   {"mu": np.asarray(reference["mu"], np.float64), "sigma": np.asarray(reference["sigma"], np.float64)})

    # --- the metric and its interval --------------------------------------------------------
    def statistic(self, rows: np.ndarray) -> float:
        """The metric of a set of this kind's rows (for fid: features)."""
        if self.kind == "mean":
            raise InputError("a 'mean' metric is bootstrapped with its clusters and strata, not row-wise")
        from cleanfid.fid import frechet_distance  # the same distance skrr.eval.fid.FID reports

        return float(frechet_distance(rows.mean(0), np.cov(rows, rowvar=False), self.reference["mu"],
                                      self.reference["sigma"]))

    def value(self) -> float:
        if self.kind == "fid":
            return self.statistic(self.values)
        return balanced_mean(self.values, self.strata)

    def interval(self, resamples: int | None = None, seed: int = 0, level: float = LEVEL) -> Interval:
        if self.kind == "fid":
            return bootstrap_statistic(self.values, self.statistic, resamples or FID_RESAMPLES, seed, level)
        return bootstrap_mean(self.values, self.clusters, self.strata, resamples or RESAMPLES, seed, level)

    # --- storage ---------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """npz, written to a temporary name and renamed: never a half-written artifact."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"kind": np.array(self.kind), "keys": self.keys, "values": self.values, "clusters": self.clusters}
        if self.strata is not None:
            arrays["strata"] = self.strata
        if self.reference is not None:
            arrays |= {"ref_mu": self.reference["mu"], "ref_sigma": self.reference["sigma"]}
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> Items:
        path = Path(path)
        if not path.is_file():
            raise MissingFile(f"no per-item scores at {path}")
        with np.load(path, allow_pickle=False) as z:
            ref = {"mu": z["ref_mu"], "sigma": z["ref_sigma"]} if "ref_mu" in z.files else None
            return cls(str(z["kind"]), z["keys"], z["values"], z["clusters"],
                       z["strata"] if "strata" in z.files else None, ref)


# --- from a metric that has been updated -----------------------------------------------------------
def from_metric(metric, prompts: list) -> Items | None:
    """The per-image scores a metric kept while it was updated (one per image, in update order), by
    the contract of eval.metrics.Metric: its `item_scores` state read as `item_kind` says (None:
    the metric keeps none, or a plug-in without images such as efficiency), clustered by prompt
    unless `resample` is "image", stratified by `item_strata` (GenEval's tasks). Keys are image
    indices until `with_seeds` gives them the generator seeds."""
    kind = getattr(metric, "item_kind", None)
    if kind is None or (kind == "fid" and metric.reference is None):  # FID against the dense images: no fixed reference
        return None
    values = metric.item_tensor().double().cpu().numpy()
    texts = [p["prompt"] if isinstance(p, dict) else p for p in prompts][:len(values)]
    index = [str(i) for i in range(len(values))]
    if kind == "fid":
        return Items.fid(values, index, texts, metric.reference)
    strata = getattr(metric, "item_strata", None)
    if strata is not None:
        strata = [metric.strata_names[i] for i in dim_zero_cat(strata).tolist()] if len(strata) else []
    return Items.mean(values, index, texts if metric.resample == "prompt" else None, strata)


def with_seeds(items: Items, image_dir, metadata=None) -> Items:
    """Key each image by its prompt and generator seed (the folder's metadata, or the `metadata` file
    of the images scored), so rows pair only when both the prompts and the seeds agree."""
    import json

    from skrr.eval.generate import METADATA

    path = Path(metadata) if metadata is not None else Path(image_dir) / METADATA
    meta = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    meta.sort(key=lambda m: m["index"])
    if len(meta) != len(items.keys):
        raise InputError(f"{image_dir} lists {len(meta)} images but the metric scored {len(items.keys)}")
    items.keys = np.asarray(item_keys([m["prompt"] for m in meta], [m["seed"] for m in meta]), dtype=str)
    return items


def summary(value, items: Items | None, resamples: int | None = None, seed: int = 0, metric=None):
    """A metric's stored result: {"value", "ci"} (GenEval: one per task and overall; a metric with an
    `intervals(clusters, resamples, seed)` method, GenEval 2: one per number it reports), or the
    plain value when there are no per-image scores."""
    if items is None:
        return value
    if metric is not None and hasattr(metric, "intervals"):
        return {k: v.as_dict() for k, v in metric.intervals(items.clusters, resamples, seed).items()}
    if items.strata is not None:  # GenEval
        from skrr.eval.intervals import geneval_intervals

        return {k: v.as_dict() for k, v in geneval_intervals(items.values, items.strata, items.clusters,
                                                             resamples or RESAMPLES, seed).items()}
    ci = items.interval(resamples, seed)
    return {"value": float(value) if isinstance(value, (int, float)) else ci.value, "ci": [ci.lo, ci.hi]}
