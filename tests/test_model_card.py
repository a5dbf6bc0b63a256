"""Every pruned folder carries a model card (README.md with Hub metadata) that states the plan,
sizes and calibration, and whose loading lines work; skrr-push uploads the folder (tested against
a fake HfApi: no network)."""
import json
import re

import pytest
import torch
import yaml
from safetensors import safe_open

from skrr import Plan
from skrr.experiments.cli.prune import card_source, write_plans
from skrr.experiments.cli.push import main as push_main
from skrr.experiments.cli.push import push
from skrr.hub.model_card import render_card, write_card

PLAN = dict(skip=[2, 3, 7], reuse={3: 1}, method={"name": "skrr", "beam_width": 3, "sparsity": 0.2},
            info={"target": 0.2, "d_final": 0.0123, "calibration": {"source": "coco", "size": 64, "sha256": "ab12cd34"}})


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def _code_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    out = tmp_path_factory.mktemp("prune")
    write_plans([Plan(**PLAN)], out, save_encoder=True, model_name="tiny_pixart", device="cpu", save_pipeline=True)
    return out


def test_encoder_card_states_plan_sizes_calibration_and_loads_as_it_says(folders, tmp_path, monkeypatch):
    from skrr.models import load_text_side

    card = (folders / "encoder" / "README.md").read_text()
    meta = _front_matter(card)
    assert meta["library_name"] == "transformers" and "skrr" in meta["tags"]
    assert "base_model" not in meta  # a tiny twin has no Hub model to name
    for fact in ("`[2, 3, 7]`", '`{"3": 1}`', "beam_width=3", "0.0123", "ab12cd34", "`coco`", "diffusers.PixArtSigmaPipeline",
                 "(target 20.00%)"):
        assert fact in card, fact
    dense = load_text_side("tiny_pixart").encoder
    dense_bytes = sum(p.numel() * p.element_size() for p in dense.parameters())
    with safe_open(str(folders / "encoder" / "model.safetensors"), framework="pt") as f:
        file_bytes = sum(f.get_tensor(k).numel() * f.get_tensor(k).element_size() for k in f.keys())
    assert f"| bytes (torch.float32) | {dense_bytes:,} -> {file_bytes:,} " in card
    plan = json.loads((folders / "encoder" / "plan.json").read_text())
    assert f"| sparsity | {plan['sparsity']:.2%}" in card
    # the card's own lines load the encoder: with skrr, and through the modelling file
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    without, with_skrr = _code_blocks(card)
    for code in (without, with_skrr):
        scope = {}
        exec(code, scope)
        assert sorted(int(k) for k in scope["encoder"].encoder.branches) == [0, 1, 4, 5, 6, *range(8, 12)]


def test_pipeline_card_and_its_loading_lines(folders, tmp_path, monkeypatch):
    card = (folders / "pipeline" / "README.md").read_text()
    assert _front_matter(card)["library_name"] == "diffusers" and _front_matter(card)["pipeline_tag"] == "text-to-image"
    assert "`[2, 3, 7]`" in card and "trust_remote_code=True" in card
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    for code in _code_blocks(card):
        scope = {}
        exec(code, scope)
        assert type(scope["pipe"]).__name__ == "PixArtSigmaPipeline"
        assert type(scope["pipe"].text_encoder).__name__ == "SkrrT5EncoderModel"


def test_a_real_model_card_names_its_hub_base_model(folders, tmp_path):
    import shutil

    shutil.copytree(folders / "encoder", tmp_path / "enc")
    plan = json.loads((tmp_path / "enc" / "plan.json").read_text())
    plan["info"]["card"].update(card_source("pixart_sigma"))
    (tmp_path / "enc" / "plan.json").write_text(json.dumps(plan))
    meta = _front_matter(render_card(tmp_path / "enc"))
    assert meta["base_model"] == ["PixArt-alpha/PixArt-Sigma-XL-2-1024-MS"]


class FakeApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs["repo_id"], kwargs))
        return type("CommitInfo", (), {"commit_url": f"https://huggingface.co/{kwargs['repo_id']}/commit/1"})()


def test_push_uploads_the_folder_with_a_card_naming_the_repo(folders, tmp_path):
    import shutil

    folder = shutil.copytree(folders / "encoder", tmp_path / "encoder")
    api = FakeApi()
    push(folder, "me/pixart-t5-skrr", private=True, api=api)
    assert [c[0] for c in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][2]["private"] is True and api.calls[0][2]["exist_ok"] is True
    assert api.calls[1][2]["folder_path"] == str(folder)
    card = (folder / "README.md").read_text()
    assert "AutoModel.from_pretrained('me/pixart-t5-skrr', trust_remote_code=True)" in card
    assert "transformers.AutoModel.from_pretrained('me/pixart-t5-skrr')" in card  # with skrr: the registered class


def test_push_refuses_what_it_should_not_upload(folders, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    api = FakeApi()
    with pytest.raises(ValueError, match="repo id"):
        push(folders / "encoder", "not a repo", api=api)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ValueError, match="not a pruned folder"):
        push(tmp_path / "plain", "me/x", api=api)
    assert api.calls == []
    monkeypatch.setattr(huggingface_hub, "HfApi", lambda: api)  # the console script builds its own client
    with pytest.raises(SystemExit) as e:
        push_main([str(tmp_path / "plain"), "me/x"])
    assert e.value.code == 2 and "not a pruned folder" in capsys.readouterr().err
    assert api.calls == []


def test_write_card_renders_again_for_a_local_folder(folders, tmp_path):
    import shutil

    folder = shutil.copytree(folders / "pipeline", tmp_path / "pipe")
    write_card(folder)
    assert f"DiffusionPipeline.from_pretrained({str(folder)!r}, trust_remote_code=True)" in (folder / "README.md").read_text()


def test_console_script_is_declared():
    from pathlib import Path

    import tomllib

    scripts = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["skrr-push"] == "skrr.experiments.cli.push:main"
    assert torch  # (imported for the fixtures' models)


def test_skrr_run_save_encoder_writes_a_folder_whose_card_has_the_measured_metrics(tmp_path):
    from test_run import compose_run

    from skrr.experiments.cli.run import run_job

    cfg = compose_run(tmp_path, "method=skrr", "method.beam_width=1", "sparsity=[0.3]", "save_encoder=true",
                      "eval.metrics=[efficiency]")
    (row,) = run_job(cfg, "t")
    folder = tmp_path / "encoders" / row["run_key"]
    assert row["artifacts"]["encoder"] == str(folder)
    card = (folder / "README.md").read_text()
    assert "## Measured by skrr-run" in card and row["run_key"] in card
    assert f"- efficiency: `{json.dumps(row['metrics']['efficiency'])}`" in card
    assert Plan.load(folder / "plan.json").skip == row["plan"]["skip"]
