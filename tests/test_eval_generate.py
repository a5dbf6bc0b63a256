"""Generation runner and efficiency on the tiny PixArt-Sigma pipeline; GenEval detector end to end."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from skrr.encoders.view import count_params
from skrr.eval import generate as gen
from skrr.experiments.runner.efficiency import efficiency_report

CFG = gen.SamplerConfig(height=32, width=32, num_inference_steps=2, base_seed=7, batch_size=2)
PROMPTS = ["a photo of a cat", "a red car", "two dogs", "a blue bench", "a green apple"]


@pytest.fixture(scope="module")
def pipe():
    torch.set_num_threads(1)
    from skrr.models import load_pipeline
    p = load_pipeline("tiny_pixart")
    p.set_progress_bar_config(disable=True)
    return p


def test_generate_shards_resume_merge(pipe, tmp_path):
    with pytest.raises(ValueError, match="empty prompt set"):
        gen.generate(pipe, [], tmp_path, CFG)
    done0 = gen.generate(pipe, PROMPTS, tmp_path, CFG, rank=0, world_size=2)
    assert done0 == [0, 1, 4]  # chunks [0, 1], [2, 3], [4] of batch_size 2, dealt round-robin
    with pytest.raises(RuntimeError, match="incomplete"):
        gen.merge(tmp_path, len(PROMPTS))
    assert not (tmp_path / gen.METADATA).exists()
    assert gen.generate(pipe, PROMPTS, tmp_path, CFG, rank=0, world_size=2) == []  # resumes: nothing left
    assert gen.generate(pipe, PROMPTS, tmp_path, CFG, rank=1, world_size=2) == [2, 3]
    rows = [json.loads(line) for line in gen.merge(tmp_path, len(PROMPTS)).read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(5)) and rows[3]["seed"] == 7 + 3
    assert rows[1]["prompt"] == PROMPTS[1]


def test_seed_pairs_by_index_not_batch(pipe, tmp_path):
    gen.generate(pipe, PROMPTS[:3], tmp_path / "a", CFG)
    single = gen.SamplerConfig(**{**CFG.__dict__, "batch_size": 1})
    gen.generate(pipe, PROMPTS[:3], tmp_path / "b", single)
    for i in range(3):
        a = np.asarray(Image.open(tmp_path / "a" / gen.image_name(i)), dtype=np.int16)
        b = np.asarray(Image.open(tmp_path / "b" / gen.image_name(i)), dtype=np.int16)
        assert np.abs(a - b).max() <= 2
    other = np.asarray(Image.open(tmp_path / "a" / gen.image_name(1)), dtype=np.int16)
    assert np.abs(other - np.asarray(Image.open(tmp_path / "a" / gen.image_name(0)), dtype=np.int16)).mean() > 1


def test_a_resume_remakes_whole_chunks_and_writes_only_the_missing_files(pipe, tmp_path):
    """Kernels may round differently for other batch shapes (AVX-512/AMX CPUs, GPUs), so an image is
    reproducible only inside its own batch: a resume regenerates the fixed chunk and the result is
    byte-identical to the uninterrupted run."""
    cfg = gen.SamplerConfig(**{**CFG.__dict__, "batch_size": 3})
    assert gen.chunks(0, 1, 5, 3) == [[0, 1, 2], [3, 4]] and gen.chunks(1, 2, 5, 2) == [[2, 3]]
    assert gen.generate(pipe, PROMPTS, tmp_path, cfg) == [0, 1, 2, 3, 4]
    original = {i: (tmp_path / gen.image_name(i)).read_bytes() for i in range(5)}
    kept = {i: (tmp_path / gen.image_name(i)).stat().st_mtime_ns for i in (0, 2, 3)}
    for i in (1, 4):  # one image from the middle of each chunk, as a kill mid-batch or a heal leaves it
        (tmp_path / gen.image_name(i)).unlink()
    assert gen.generate(pipe, PROMPTS, tmp_path, cfg) == [1, 4]
    assert {i: (tmp_path / gen.image_name(i)).read_bytes() for i in range(5)} == original
    assert {i: (tmp_path / gen.image_name(i)).stat().st_mtime_ns for i in (0, 2, 3)} == kept  # not rewritten
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        gen.generate(pipe, PROMPTS, tmp_path, gen.SamplerConfig(**{**CFG.__dict__, "batch_size": 0}))


def test_rank_from_env(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert gen.resolve_rank() == (1, 3)
    with pytest.raises(ValueError, match="rank"):
        gen.resolve_rank(3, 3)


def test_efficiency_counts(pipe):
    steps = 2
    r = efficiency_report(pipe, height=32, width=32, num_inference_steps=steps)
    enc = pipe.text_encoder
    assert r["encoder_params"] == count_params(enc)
    assert r["pipeline_params"] == sum(count_params(m) for m in (enc, pipe.transformer, pipe.vae))
    assert r["total_flops"] == r["encoder_flops"] + r["denoiser_flops"] + r["vae_flops"] + r["other_flops"]
    assert r["encoder_flops"] > 0 and r["vae_flops"] > 0
    r4 = efficiency_report(pipe, height=32, width=32, num_inference_steps=2 * steps)
    assert r4["denoiser_flops"] == 2 * r["denoiser_flops"]  # denoiser x steps
    assert r4["encoder_flops"] == r["encoder_flops"]  # encoder once
    assert r["encoder_flop_share"] == pytest.approx(r["encoder_flops"] / r["total_flops"])


def test_geneval_tiny_end_to_end():
    from skrr.eval.geneval.detector import instance_postprocess
    from skrr.eval.geneval.evaluate import GenEval, expand_metadata
    from skrr.eval.geneval.prompts import generate_suite

    metric = GenEval(tiny=True)
    suite = generate_suite(n=1)
    metas = expand_metadata([m for m in suite if m["tag"] != "single_object"] + suite[:1], 1)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)) for _ in metas]
    metric.update(images, metas)
    scores = metric.compute()
    assert set(scores) == {"single_object", "two_object", "counting", "colors", "position", "color_attr", "overall"}
    dets = metric.detector(images[0])
    assert len(dets) == 100  # top-100 of 10 queries x 80 classes
    assert all(d.mask.shape == (48, 64) and 0 <= d.score <= 1 for d in dets)
    # post-processing rule on hand-built logits: class prob x mean mask prob, box from mask
    class_logits = torch.full((2, 4), -20.0)
    class_logits[0, 1] = 20.0  # query 0 -> class 1
    masks = torch.full((2, 8, 8), -5.0)
    masks[0, 2:4, 3:6] = 5.0
    out = instance_postprocess(class_logits, masks, ["a", "b", "c"], max_per_image=100)
    best = max(out, key=lambda d: d.score)
    assert best.label == "b" and best.box == (3.0, 2.0, 6.0, 4.0)
    assert best.score == pytest.approx(torch.sigmoid(torch.tensor(5.0)).item(), rel=1e-4)


def test_generation_feeds_the_encoder_as_calibration_did():
    """The tiny SD3 twin prunes at 32 tokens; its pipeline's default is 256. The T5 embeddings
    the pipeline computes while generating must equal TextSide.tokenize + encoder."""
    from skrr.models import load_pipeline, load_text_side

    prompts = ["a red cat sitting on a wooden table near the window", "two dogs"]
    pipe, side = load_pipeline("tiny_sd3"), load_text_side("tiny_sd3")
    pipe.set_progress_bar_config(disable=True)
    seen = []
    pipe.text_encoder_3.register_forward_hook(lambda m, args, kwargs, out: seen.append(out[0]), with_kwargs=True)
    cfg = gen.SamplerConfig(height=16, width=16, num_inference_steps=1, guidance_scale=1.0)
    kwargs = gen.pipeline_kwargs(pipe, cfg)
    assert kwargs["max_sequence_length"] == 32
    pipe(prompt=prompts, **kwargs)
    tokens = side.tokenize(prompts)
    with torch.no_grad():
        expected = side.encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])[0]
    assert len(seen) == 1 and torch.equal(seen[0], expected)
