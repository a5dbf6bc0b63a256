"""Metric factory and the folder-level evaluation chain the runner calls.

build_metric(name, cfg): cfg is the metric's config group (conf/metrics/<name>.yaml) plus the
eval-wide keys `tiny` (build tiny random backbones offline instead of loading pretrained ones) and
`device`. Every metric follows torchmetrics' update/compute; DreamSim's update takes image pairs.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from eval.images import batched, list_images, load_images

METRICS = ("fid", "clip", "dreamsim", "geneval", "efficiency")
CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


def _get(cfg, key, default=None):
    return cfg.get(key, default) if cfg is not None else default


def build_metric(name: str, cfg=None):
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose from {list(METRICS)} (e.g. metrics=[clip,geneval])")
    tiny, device = bool(_get(cfg, "tiny", False)), _get(cfg, "device", "cpu")
    if _get(cfg, "backend") == "toyworld":  # exact toy-world versions (experiments.toyworld.metrics)
        from experiments.toyworld.metrics import build_metric as build_toy
        return build_toy(name, cfg)
    if name == "clip":
        from eval.clip_score import CLIPScore
        return CLIPScore(_get(cfg, "model", "ViT-B-32-quickgelu"), _get(cfg, "pretrained", "openai"), device, tiny)
    if name == "fid":
        from eval.fid import FID
        extractor = None
        if tiny:
            from eval.tiny import TinyFeatureNet
            extractor = TinyFeatureNet()
        return FID(_get(cfg, "reference_stats"), _get(cfg, "backend", "clean"), extractor, device=device,
                   batch_size=_get(cfg, "batch_size", 32))
    if name == "dreamsim":
        from eval.dreamsim_score import DreamSimScore
        return DreamSimScore(device, _get(cfg, "dreamsim_type", "ensemble"), _get(cfg, "cache_dir", "./models"), tiny)
    if name == "geneval":
        from eval.geneval.evaluate import GenEval
        from eval.geneval.rules import RuleConfig
        rules = RuleConfig(**{k: _get(cfg, k) for k in RuleConfig.__dataclass_fields__ if _get(cfg, k) is not None})
        return GenEval(device=device, tiny=tiny, detector_name=_get(cfg, "detector"),
                       clip_model=_get(cfg, "clip_model", "ViT-L-14-quickgelu"),
                       clip_pretrained=_get(cfg, "clip_pretrained", "openai"), rules=rules)
    from eval.efficiency import Efficiency
    return Efficiency()


def fid_needs_reference_stats(cfg) -> bool:
    """Real FID needs precomputed reference statistics; tiny evals use the dense images and the
    toy world its ground-truth renders instead."""
    return not _get(cfg, "tiny", False) and _get(cfg, "backend") != "toyworld" and not _get(cfg, "reference_stats")


def fid_reference_from_dense(cfg) -> bool:
    """Tiny evals without statistics: the dense images are the FID reference (dense FID = 0)."""
    return bool(_get(cfg, "tiny", False)) and _get(cfg, "backend") != "toyworld" and not _get(cfg, "reference_stats")


def metric_config(name: str, eval_cfg=None, conf_dir: Path = CONF_DIR) -> DictConfig:
    """conf/metrics/<name>.yaml merged with the eval config's tiny/device and its per-metric overrides."""
    path = conf_dir / "metrics" / f"{name}.yaml"
    if name not in METRICS or not path.is_file():
        raise ValueError(f"unknown metric {name!r}; choose from {list(METRICS)} (e.g. metrics=[clip,geneval])")
    cfg = OmegaConf.load(path)
    if eval_cfg is not None:
        cfg = OmegaConf.merge(cfg, {"tiny": _get(eval_cfg, "tiny", False), "device": _get(eval_cfg, "device", "cpu")},
                              _get(eval_cfg, "overrides", {}).get(name, {}) if _get(eval_cfg, "overrides") else {})
    return cfg


def load_folder(image_dir, expected: int) -> list[Path]:
    """The folder's images, checked to number exactly `expected` (one per prompt index)."""
    files = list_images(image_dir)
    if len(files) != expected:
        raise ValueError(f"{image_dir} holds {len(files)} images but the prompt set has {expected}; "
                         "finish generation (it resumes) or point at the right folder")
    return files


def evaluate_folder(name: str, metric, image_dir, prompts: list, batch_size: int = 16, dense_dir=None):
    """Feed a generated folder (and for DreamSim the dense folder of the same prompts) to a metric."""
    files = load_folder(image_dir, len(prompts))
    if name == "dreamsim":
        if dense_dir is None:
            raise ValueError("DreamSim compares with the dense model's images; pass dense_dir")
        dense = load_folder(dense_dir, len(prompts))
        for a, b in zip(batched(dense, batch_size), batched(files, batch_size)):
            metric.update(load_images(a), load_images(b))
        return metric.compute()
    for start in range(0, len(files), batch_size):
        metric.update(load_images(files[start:start + batch_size]), prompts[start:start + batch_size])
    return metric.compute()
