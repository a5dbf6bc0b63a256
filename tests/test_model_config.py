"""A model config is built as a `skrr.models.Model` with a pipeline adapter: a mistyped or missing
key fails at construction naming `model.<key>`, the registry does not import the tiny builders,
and one loader gives a pipeline pruned by a plan."""
import json
import subprocess
import sys

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from skrr import Plan, apply_plan
from skrr.errors import ConfigError
from skrr.experiments.cli.app import CONF_DIR
from skrr.experiments.runner.checks import check_config
from skrr.models import HubPipeline, Model, build_model, load_pipeline, model_config, read_from, resolve_pretrained
from skrr.models.tiny import TinyPipeline, tiny_pipeline_dir
from skrr.plan import plan_file_name


def _cfg(name, **changes):
    cfg = OmegaConf.create(OmegaConf.to_container(model_config(name)))  # not struct: keys may be added
    for key, value in changes.items():
        cfg[key] = value
    return cfg


def test_every_shipped_model_builds_with_its_adapter():
    from skrr.models import available_models

    for name in available_models():
        model = build_model(name)
        assert isinstance(model, Model) and model.name == name
        expected = TinyPipeline if name.startswith("tiny_") else HubPipeline
        assert type(model.pipeline) is expected, name
    assert build_model("tiny_sd3").pipeline.pipeline_class == build_model("sd3_medium").pipeline.pipeline_class


@pytest.mark.parametrize("changes,key", [
    ({"pretraind": "x"}, "model.pretraind"),                               # a typo at the top
    ({"pipeline": {"_target_": "skrr.models.tiny.TinyPipeline", "pipeline_class": "diffusers.PixArtSigmaPipeline",
                   "twn": "tiny_pixart"}}, "model.pipeline.twn"),          # a typo inside the adapter
    ({"pipeline": {"_target_": "skrr.models.tiny.TinyPipeline", "pipeline_class": "diffusers.PixArtSigmaPipeline",
                   "twin": "tiny_pixrt"}}, "model.pipeline.twin"),         # an adapter's own range check
    ({"pipeline": {"_target_": "skrr.models.HubPipeline"}}, "model.pipeline.pipeline_class"),  # missing
    ({"pipeline": {"_target_": "skrr.models.Nope", "pipeline_class": "x"}}, "model.pipeline._target_"),
    ({"pipeline": {"_target_": "skrr.models.Model", "pipeline_class": "x"}}, "model.pipeline._target_"),  # not an adapter
    ({"dtype": "float8"}, "model.dtype"),
    ({"pretrained": "/some/folder"}, "model.pretrained"),                  # a tiny twin reads no weights
])
def test_a_bad_model_key_fails_at_construction_naming_it(changes, key):
    cfg = _cfg("tiny_pixart", **changes)
    with pytest.raises(ConfigError) as e:
        model_config(cfg)
    assert e.value.key == key and str(e.value).startswith(key + " ")


def test_a_hub_model_needs_its_weights_named():
    with pytest.raises(ConfigError, match=r"^model.pretrained must name the weights"):
        build_model(_cfg("pixart_sigma", pretrained=None))


def test_the_commands_check_the_model_before_anything_loads():
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="prune", overrides=["model=tiny_pixart", "+model.hidden_stat=-2"])
    with pytest.raises(ConfigError, match=r"^model.hidden_stat is not a setting of Model; did you mean hidden_state\?"):
        check_config(cfg)


def test_the_registry_does_not_import_the_tiny_builders():
    code = "import sys, skrr.models; print('skrr.models.tiny' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_a_saved_copy_of_a_twin_is_read_by_folder(tmp_path):
    folder = tmp_path / "copy"
    load_pipeline("tiny_pixart").save_pretrained(folder)
    local = read_from("tiny_pixart", folder)
    assert resolve_pretrained(local) == str(folder) and resolve_pretrained("tiny_pixart") == str(tiny_pipeline_dir("tiny_pixart"))
    a, b = load_pipeline("tiny_pixart"), load_pipeline(local)
    assert type(a) is type(b)
    assert all(torch.equal(x, y) for x, y in zip(a.text_encoder.state_dict().values(), b.text_encoder.state_dict().values()))


def test_load_pipeline_with_a_plan_is_the_pipeline_pruned_by_it(tmp_path):
    plan = Plan(skip=[1, 4], reuse={4: 2})
    pruned = load_pipeline("tiny_pixart", plan=plan, plan_dir=tmp_path)
    by_hand = load_pipeline("tiny_pixart")
    apply_plan(by_hand.text_encoder, Plan(skip=[1, 4], reuse={4: 2}))
    dense = load_pipeline("tiny_pixart")
    ids = torch.tensor([[5, 9, 13, 1]])
    with torch.no_grad():
        out = pruned.text_encoder(input_ids=ids)[0]
        assert torch.equal(out, by_hand.text_encoder(input_ids=ids)[0])
        assert not torch.equal(out, dense.text_encoder(input_ids=ids)[0])
    assert plan.sparsity > 0  # measured by apply_plan on the loaded encoder


def test_one_plan_file_name_for_a_target():
    from skrr.experiments.runner.stages import plan_file

    assert plan_file_name(0.4) == "plan_0.4000.json" == plan_file(0.4)
    assert plan_file_name(0.125) != plan_file_name(0.1251)  # four decimals tell close targets apart


def test_skrr_prune_names_each_target_s_plan_file(tmp_path):
    out = tmp_path / "run"
    subprocess.run([sys.executable, "-m", "skrr.experiments.cli.prune", "model=tiny_pixart", "method=shortgpt",
                    "method.sparsity=[0.1,0.2]", "calibration.size=4", "progress=false", f"paths.root={tmp_path}",
                    f"hydra.run.dir={out}"], check=True, capture_output=True, text=True, timeout=600)
    names = sorted(p.name for p in out.glob("plan_*.json"))
    assert names == [plan_file_name(0.1), plan_file_name(0.2)]
    assert [json.loads((out / n).read_text())["info"]["target"] for n in names] == [0.1, 0.2]


def test_bad_weights_or_class_names_fail_before_any_weight_loads():
    from skrr.errors import MissingFile

    with pytest.raises(MissingFile, match=r"^model.pretrained=pkg:no_such_package_x/weights: no installed package"):
        resolve_pretrained(_cfg("toyworld", pretrained="pkg:no_such_package_x/weights"))
    cfg = _cfg("tiny_pixart")
    cfg.pipeline.pipeline_class = "diffusers.NoSuchPipeline"
    model = build_model(cfg)  # the class is imported only to load (the config checks stay cheap)
    with pytest.raises(ConfigError, match=r"^model.pipeline.pipeline_class names 'diffusers.NoSuchPipeline'"):
        load_pipeline(cfg)
    assert model.pipeline.class_name == "NoSuchPipeline"
