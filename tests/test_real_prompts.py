"""Real prompts for real models: calibration=builtin is refused for anything but the tiny twins and
the toy world (one line, before any weight loads); calibration=coco reads COCO train captions,
refuses val2014, is seeded, filters by the model's tokenizer and is recorded (with its file's hash)
in the plan; offline, a model missing from the cache says so."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from skrr import Plan
from skrr.models import CONF_DIR, load_text_side, model_config
from skrr.prompts.real import CHOICES, check_prompts_fit_model, coco_captions
from skrr.prompts.sources import as_source

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
WORDS = "a red cat sits on the green mat beside two small blue dogs under a tall old tree near the river".split()


def coco_file(path: Path, split: str = "train2014", n_images: int = 30, first_id: int = 1) -> Path:
    """A captions file in COCO's format: images with file names, five captions per image (some repeated)."""
    images = [{"id": first_id + i, "file_name": f"COCO_{split}_{first_id + i:012d}.jpg"} for i in range(n_images)]
    annotations = []
    for im in images:
        for j in range(5):
            k = (im["id"] * 7 + j * 3) % len(WORDS)
            words = WORDS[k:] + WORDS[:k]
            annotations.append({"id": len(annotations) + 1, "image_id": im["id"],
                                "caption": " ".join(words[:4 + (im["id"] + j) % 12]) + " ."})
    annotations.append({"id": 9999, "image_id": first_id, "caption": "  " + annotations[0]["caption"] + " "})  # a repeat
    path.write_text(json.dumps({"info": {"description": "test"}, "images": images, "annotations": annotations}))
    return path


def calib(**kw):
    return OmegaConf.merge(OmegaConf.load(REPO / "conf" / "calibration" / "coco.yaml"), kw)


def test_real_models_refuse_builtin_calibration_and_twins_accept_it():
    builtin = OmegaConf.load(REPO / "conf" / "calibration" / "builtin.yaml")
    for name in ("pixart_sigma", "sd3_medium", "flux_dev", "sana_1600m", "lumina2", "qwen_image"):
        with pytest.raises(ValueError) as e:
            check_prompts_fit_model(builtin, model_config(name))
        assert "\n" not in str(e.value) and CHOICES in str(e.value) and name in str(e.value)
    for name in ("tiny_pixart", "tiny_sana", "toyworld", "toyworld_v2"):
        check_prompts_fit_model(builtin, model_config(name))
    check_prompts_fit_model(calib(path="x.json"), model_config("pixart_sigma"))


def test_skrr_prune_on_a_real_model_with_the_default_calibration_fails_in_one_line_before_loading(tmp_path):
    from skrr.models.tiny import tiny_pipeline_dir

    folder = tiny_pipeline_dir("tiny_pixart")  # a PixArt pipeline folder; the refusal comes before it is read
    p = subprocess.run([sys.executable, "-m", "skrr.experiments.cli.prune", "model=pixart_sigma", f"model.pretrained={folder}",
                        f"hydra.run.dir={tmp_path / 'run'}"], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and "calibration=builtin" in err[0] and CHOICES in err[0], p.stderr
    assert not list((tmp_path / "run").glob("*.json"))


def test_the_library_refuses_it_before_loading(monkeypatch):
    import skrr.prune

    monkeypatch.setattr(skrr.prune, "load_text_side", lambda *a, **k: pytest.fail("weights loaded"))
    with pytest.raises(ValueError, match="needs real prompts"):
        skrr.prune.prune("pixart_sigma", {"name": "skrr", "sparsity": 0.3},
                         OmegaConf.load(REPO / "conf" / "calibration" / "builtin.yaml"))


def test_table1_experiments_default_to_coco_and_ask_for_the_path(tmp_path):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        for name in ("table1_pixart", "table1_sana", "table1_lumina2", "table1_qwen_image", "sd3_t5", "flux_t5",
                     "table1_flux2", "table1_flux2_klein", "table1_z_image", "table1_chroma",
                     "table1_hidream_i1"):
            assert compose(config_name="run", overrides=[f"experiment={name}"]).calibration.source == "coco"
        for name in ("tiny_table1_pixart", "tiny_sd3_t5", "tiny_table1_flux2", "tiny_table1_flux2_klein",
                     "tiny_table1_z_image", "tiny_table1_chroma"):
            assert compose(config_name="run", overrides=[f"experiment={name}"]).calibration.source == "builtin"
    with pytest.raises(ValueError, match="calibration.path=<annotations/captions_train2014.json>"):
        as_source(calib()).check()


def test_coco_captions_are_distinct_seeded_and_leave_val2014_out(tmp_path):
    train = coco_file(tmp_path / "captions_train2014.json")
    captions = coco_captions(train)
    raw = [a["caption"] for a in json.loads(train.read_text())["annotations"]]
    assert len(captions) == len(set(captions)) < len(raw)
    assert set(captions) == {" ".join(c.split()) for c in raw}
    assert coco_captions(train, pool=10, seed=1) == coco_captions(train, pool=10, seed=1) != coco_captions(train, pool=10, seed=2)
    val = coco_file(tmp_path / "captions_val2014.json", "val2014", n_images=4, first_id=1000)  # shares captions with train
    with pytest.raises(ValueError, match="val2014"):
        as_source(calib(path=str(val))).check()
    renamed = tmp_path / "mine.json"
    renamed.write_text(val.read_text())
    with pytest.raises(ValueError, match="val2014 images"):
        coco_captions(renamed)
    kept = coco_captions(train, exclude=val)
    val_texts = {" ".join(a["caption"].split()) for a in json.loads(val.read_text())["annotations"]}
    assert kept and not set(kept) & val_texts and set(kept) < set(captions)


def test_coco_filter_uses_the_models_tokenizer(tmp_path):
    train = coco_file(tmp_path / "captions_train2014.json")
    side = load_text_side("tiny_pixart")
    length = lambda p: len(side.tokenizer(p, add_special_tokens=True).input_ids)  # noqa: E731
    pool = as_source(calib(path=str(train))).prompts()
    lengths = sorted(length(p) for p in pool)
    lo, hi = lengths[len(lengths) // 3], lengths[2 * len(lengths) // 3]  # keep the middle third or so
    cfg = calib(path=str(train), size=6, min_tokens=lo, max_tokens=hi)
    chosen = as_source(cfg).select(token_length=length)
    assert len(chosen) == 6 and all(lo <= length(p) <= hi for p in chosen)
    assert any(length(p) < lo for p in pool) and any(length(p) > hi for p in pool)  # the filter removed some


def test_skrr_prune_with_coco_records_the_calibration_in_the_plan_and_card(tmp_path):
    train = coco_file(tmp_path / "captions_train2014.json")
    p = subprocess.run([sys.executable, "-m", "skrr.experiments.cli.prune", "model=tiny_pixart", "calibration=coco",
                        f"calibration.path={train}", "calibration.size=8", "method.beam_width=1", "method.sparsity=0.2",
                        "progress=false", "save_encoder=true", f"hydra.run.dir={tmp_path / 'run'}"],
                       cwd=REPO, env=ENV, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    plan = Plan.load(tmp_path / "run" / "plan.json")
    rec = plan.info["calibration"]
    assert rec["source"] == "coco" and rec["size"] == 8 and rec["path"] == str(train)
    assert rec["path_sha256"] == hashlib.sha256(train.read_bytes()).hexdigest()
    card = (tmp_path / "run" / "encoder" / "README.md").read_text()
    assert rec["path_sha256"] in card and rec["prompts_sha256"] in card


def test_offline_and_not_cached_says_so(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(FileNotFoundError) as e:
        load_text_side("pixart_sigma")
    msg = str(e.value)
    assert "not in the local Hugging Face cache" in msg and "HF_HUB_OFFLINE" in msg and "model_index.json" not in msg


def test_a_pretrained_that_is_neither_folder_nor_hub_id_says_so():
    cfg = model_config("pixart_sigma")
    cfg.pretrained = "/no/such/folder"
    with pytest.raises(FileNotFoundError, match="neither a local folder nor a Hub model id"):
        load_text_side(cfg)
