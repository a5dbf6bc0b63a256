"""Toy world v2: a T5-XXL-shaped encoder, the caption-structure targets it is trained on, and the
full-size GenEval set on which the true scenes score perfectly."""
import json

import numpy as np
import pytest
import torch
from transformers import T5Config, T5EncoderModel

from skrr.config.legacy import current_name
from skrr.experiments.toyworld import TASKS, WEIGHTS
from skrr.experiments.toyworld.captions import RELATIONS, prompt_scenes, sample_example
from skrr.experiments.toyworld.metrics import geneval_scores
from skrr.experiments.toyworld.scenes import COLORS, SHAPES, relation, render
from skrr.experiments.toyworld.structure import IGNORE, caption_targets
from skrr.experiments.toyworld.train_v2 import ENCODER, FULL_GENEVAL, build_encoder

WEIGHTS_V2 = WEIGHTS.with_name("weights_v2")


def _sub_block_shares(encoder: T5EncoderModel) -> tuple[float, float]:
    total = sum(p.numel() for p in encoder.parameters())
    block = encoder.encoder.block[1]
    return (sum(p.numel() for p in block.layer[0].parameters()) / total,
            sum(p.numel() for p in block.layer[1].parameters()) / total)


def test_v2_encoder_has_t5_xxl_sub_block_shares():
    # T5-v1.1-XXL's published encoder configuration, built without weights
    with torch.device("meta"):
        xxl = T5EncoderModel(T5Config(vocab_size=32128, d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=24,
                                      feed_forward_proj="gated-gelu", is_encoder_decoder=False))
    toy = build_encoder(ENCODER)
    assert len(toy.encoder.block) == 24 and toy.config.feed_forward_proj == "gated-gelu"
    assert toy.config.d_ff / toy.config.d_model == 2.5
    assert toy.config.num_heads * toy.config.d_kv == toy.config.d_model  # as in XXL: 64 x 64 = 4096
    for got, want in zip(_sub_block_shares(toy), _sub_block_shares(xxl)):
        assert abs(got - want) < 0.0001, (got, want)  # within 0.01 percentage points


def test_caption_targets_bind_each_attribute_to_its_object():
    t = caption_targets("a photo of a red ring and a blue cross")
    assert t["color"] == [IGNORE] * 3 + [COLORS.index("red") + 1] * 3 + [IGNORE] + [COLORS.index("blue") + 1] * 3
    assert t["shape"][3:6] == [SHAPES.index("ring")] * 3 and t["shape"][7:] == [SHAPES.index("cross")] * 3
    assert t["objects"] == [1] * 10  # two objects
    t = caption_targets("a photo of a ring left of a square")
    left, right = RELATIONS.index("left of") + 1, RELATIONS.index("right of") + 1
    assert t["relation"] == [IGNORE] * 3 + [left] * 4 + [right] * 2  # the square is right of the ring
    t = caption_targets("a photo of three crosses")
    assert t["count"][3:] == [2, 2] and t["objects"][0] == 2 and t["color"][3:] == [0, 0]
    t = caption_targets("two shapes on a black background : a red ring at the top far left , "
                        "a white square at the bottom right")
    assert t["row"][7:15] == [1] * 8 and t["col"][7:15] == [1] * 8  # top (row 0), far left (col 0)
    assert t["row"][16:] == [4] * 7 and t["col"][16:] == [3] * 7  # bottom (row 3), right (col 2)
    assert t["shape"][15] == IGNORE and t["objects"] == [1] * 23
    with pytest.raises(ValueError, match="objects"):
        caption_targets("a photo of four rings and three squares")


@pytest.mark.parametrize("task", [*TASKS, "long"])
def test_caption_targets_agree_with_the_scenes_the_captions_were_drawn_for(task):
    rng = np.random.default_rng(3)
    for _ in range(60):
        scene, text, _ = sample_example(task, rng)
        t = caption_targets(text)
        assert t["objects"][0] + 1 == len(scene.objects)
        stated = {(t["shape"][i], t["color"][i], t["row"][i], t["col"][i]) for i in range(len(t["shape"]))
                  if t["shape"][i] != IGNORE}
        for shape, color, row, col in stated:  # every stated attribute holds for some object of the scene
            assert any(SHAPES.index(o.shape) == shape and (color == 0 or COLORS.index(o.color) + 1 == color)
                       and (row == 0 or o.row + 1 == row) and (col == 0 or o.col + 1 == col) for o in scene.objects)
        if task == "position":
            a, b = scene.objects
            subject_rel = RELATIONS[t["relation"][3] - 1]
            assert relation(a, b) == {subject_rel}


def test_true_scenes_score_perfectly_on_the_full_geneval_set():
    pairs = prompt_scenes("geneval", **FULL_GENEVAL)
    assert len(pairs) >= 1600
    scores = geneval_scores([render(s) for s, _ in pairs], [m for _, m in pairs])
    assert set(scores) == {*TASKS, "overall"}
    assert all(v == 1.0 for v in scores.values()), scores


def test_trainer_stages_refuse_missing_inputs_before_any_work(tmp_path):
    from skrr.experiments.toyworld.train_v2 import main

    with pytest.raises(SystemExit, match="no trained text encoder"):
        main(["denoiser", "--work", str(tmp_path)])
    with pytest.raises(SystemExit, match="no denoiser checkpoint"):
        main(["export", "--work", str(tmp_path)])
    with pytest.raises(SystemExit, match="evaluate needs --out"):
        main(["evaluate", "--out", str(tmp_path)])
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_denoiser_settings_override_and_are_recorded():
    from skrr.experiments.toyworld.train_v2 import DENOISER, MIX, with_settings

    cfg = with_settings({**DENOISER, "mix": dict(MIX)}, ["lr=0.0006", "mix.position=0.36"])
    assert cfg["lr"] == 0.0006 and cfg["mix"]["position"] == 0.36 and MIX["position"] != 0.36
    for bad in ["lr", "learning_rate=1", "mix.poetry=0.1"]:
        with pytest.raises(SystemExit, match="--set"):
            with_settings({**DENOISER, "mix": dict(MIX)}, [bad])


def test_v2_weights_are_small_and_carry_their_commands():
    files = [p for p in WEIGHTS_V2.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) < 50 * 2**20
    record = json.loads((WEIGHTS_V2 / "training.json").read_text())
    # the commands as run (before the re-layout: experiments.train_toyworld_v2), today's trainer module
    modules = {current_name(c.split()[2]) for c in record["commands"] if c.startswith("python -m ")}
    assert len(record["commands"]) == 5 and modules == {"skrr.experiments.toyworld.train_v2"}
    config = json.loads((WEIGHTS_V2 / "text_encoder" / "config.json").read_text())
    assert (config["num_layers"], config["d_ff"], config["d_model"]) == (24, 160, 64)


def test_registry_loads_v2_with_48_sub_blocks():
    from skrr.models import load_text_side

    side = load_text_side("toyworld_v2")
    assert len(side.encoder.encoder.block) == 24 and side.projection is not None
    t = side.tokenize(["a photo of a green triangle"])
    with torch.no_grad():
        out = side.encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"])[0]
    assert out.shape[-1] == 64 and torch.isfinite(out).all()


def test_v2_dense_model_follows_relational_prompts(tmp_path):
    """On held-out prompts and seeds (not the evaluation set), the shipped v2 pipeline draws what it
    is told, relations included: v1 scored 0.22 on position and 0.16 on colour attribution."""
    from PIL import Image

    from skrr.eval.generate import SamplerConfig, generate
    from skrr.experiments.toyworld.captions import prompts
    from skrr.experiments.toyworld.pipeline import ToyWorldPipeline

    meta = prompts("geneval", 96, seed=11)
    generate(ToyWorldPipeline.from_pretrained(WEIGHTS_V2), [m["prompt"] for m in meta], tmp_path,
             SamplerConfig(32, 32, 20, 4.5, 5000, 48))
    scores = geneval_scores([Image.open(tmp_path / f"{i:05d}.png") for i in range(96)], meta)
    # floors below the measured level (full set: see weights_v2/training.json) by about the noise of 16 prompts a task
    assert scores["overall"] >= 0.65, scores
    assert (scores["position"] + scores["color_attr"]) / 2 >= 0.45, scores


def test_a_resumed_denoiser_replays_as_one_command_per_run(tmp_path):
    from skrr.experiments.toyworld.train_v2 import main

    work, out = str(tmp_path / "work"), tmp_path / "weights"
    main(["encoder", "--work", work, "--steps", "2", "--minutes", "1"])
    main(["denoiser", "--work", work, "--minutes", "0.01"])
    main(["denoiser", "--work", work, "--minutes", "0.02", "--set", "mix.position=0.5"])
    main(["export", "--work", work, "--out", str(out)])
    record = json.loads((out / "training.json").read_text())
    runs = [c for c in record["commands"] if " denoiser " in c]
    assert len(runs) == 2 and "--minutes 0.01 " in runs[0] and runs[0].endswith("--threads 1")
    assert "--minutes 0.02 " in runs[1] and runs[1].endswith("--set mix.position=0.5")
    assert record["denoiser"]["config"]["mix"]["position"] == 0.5
