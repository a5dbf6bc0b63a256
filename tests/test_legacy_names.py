"""Configs, plug-ins and stores written before the re-layout into sub-packages keep working: the old
module names of `_target_`s build today's classes, and a stage's cache key does not depend on which
name its config used (so a store written then is reused)."""
import pytest
from hydra.utils import get_class

import skrr.methods
from skrr.config.build import with_current_targets
from skrr.config.legacy import current_name, key_name, key_names
from skrr.experiments.runner.stages import Plans, digest

# every `_target_` that conf/ shipped before the re-layout (skrr 0.1)
OLD_TARGETS = [
    "baselines.finercut.FinerCut", "baselines.laco.LaCo", "baselines.shortgpt.ShortGPT",
    "eval.clip_score.CLIPScore", "eval.dreamsim_score.DreamSimScore", "eval.fid.FID",
    "eval.geneval.evaluate.GenEval", "experiments.efficiency.Efficiency", "experiments.slurm.SlurmStates",
    "experiments.toyworld.captions.prompts", "experiments.toyworld.detect.ToyDetector",
    "experiments.toyworld.metrics.ToyFID", "experiments.toyworld.metrics.ToySimilarity",
    "skrr.methods.Dense", "skrr.methods.Skrr", "skrr.models.HubPipeline", "skrr.models.Model",
    "skrr.presets.Preset", "skrr.prompt_sources.Builtin", "skrr.prompt_sources.Coco",
    "skrr.prompt_sources.HFDataset", "skrr.prompt_sources.Plugin", "skrr.prompt_sources.PromptFile",
    "skrr.tiny.TinyPipeline",
]


@pytest.mark.parametrize("old", OLD_TARGETS)
def test_an_old_target_names_todays_class_and_maps_back(old):
    new = current_name(old)
    obj = get_class(new) if new[new.rindex(".") + 1].isupper() else None
    assert obj is None or obj.__module__ == new.rpartition(".")[0]
    assert new.startswith("skrr.") and key_name(new) == old


def test_old_and_new_names_give_one_cache_key():
    old = {"name": "toy", "pipeline": {"_target_": "skrr.tiny.TinyPipeline", "twin": "pixart"},
           "pretrained": "pkg:experiments.toyworld/weights", "source": "experiments.toyworld.captions.calibration_prompts"}
    new = {"name": "toy", "pipeline": {"_target_": "skrr.models.tiny.TinyPipeline", "twin": "pixart"},
           "pretrained": "pkg:skrr.experiments.toyworld/weights",
           "source": "skrr.experiments.toyworld.captions.calibration_prompts"}
    assert key_names(new) == old
    assert digest("plan", old) == digest("plan", new)
    method = {"name": "skrr", "beam_width": 3}
    built = skrr.methods.load("skrr", beam_width=3)
    assert Plans(old, built, method, {}, (0.3,)).key == Plans(new, built, method, {}, (0.3,)).key
    assert digest("plan", old) != digest("plan", {**old, "name": "other"})  # the key still sees the rest


def test_nested_old_targets_build():
    cfg = with_current_targets({"text": {"_target_": "experiments.toyworld.captions.prompts", "n": 2},
                                "items": [{"_target_": "eval.fid.FID"}], "_target_": "skrr.tiny.TinyPipeline"})
    assert cfg == {"text": {"_target_": "skrr.experiments.toyworld.captions.prompts", "n": 2},
                   "items": [{"_target_": "skrr.eval.fid.FID"}], "_target_": "skrr.models.tiny.TinyPipeline"}


def test_a_pkg_path_keeps_its_calibration_cache_key(monkeypatch):
    """The calibration cache key hashes the model's `pretrained`; the toy world's `pkg:` path changed
    name with the re-layout, its key did not."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    import skrr.search.calibration as calibration

    monkeypatch.setattr(calibration, "weights_fingerprint", lambda *modules: "the same weights")

    def key(pretrained):
        cfg = OmegaConf.create({"name": "toyworld_v2", "pretrained": pretrained, "max_length": 8})
        return calibration._key(SimpleNamespace(cfg=cfg, encoder=None, projection=None), ["a prompt"], True, {})

    assert key("pkg:skrr.experiments.toyworld/weights_v2") == key("pkg:experiments.toyworld/weights_v2")
    assert key("pkg:skrr.experiments.toyworld/weights_v2") != key("pkg:skrr.experiments.toyworld/weights")
