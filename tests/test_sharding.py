"""Multi-process generation: two real ranks under torchrun (RANK/WORLD_SIZE from the launcher) each
generate their shard with the tiny pipeline, then merge; the images are byte-identical to a
single-process run (every image is made inside its fixed chunk, whatever the rank count).
(tests/test_eval_generate.py covers the shard arithmetic and resume in one process.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from skrr.eval import generate as gen

PROMPTS = ["a red cube", "two blue balls", "a cat on a mat", "a green tree", "a yellow car"]
SAMPLER = ["--height", "16", "--width", "16", "--steps", "2", "--batch-size", "2", "--seed", "3", "--device", "cpu"]


def pixels(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def test_torchrun_two_ranks_then_merge_equals_single_process(tmp_path):
    from skrr.models.tiny import tiny_pipeline_dir

    tiny_pipeline_dir("tiny_pixart")  # build the cached tiny pipeline once, before two processes load it
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "sharded"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([*torchrun, "-m", "skrr.eval.generate", "generate", "--out", str(out), "--prompts", str(prompt_file),
                        "--pipeline", "tiny_pixart", *SAMPLER], capture_output=True, text=True, env=env, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0, p.stderr[-3000:]
    for rank, expected in ((0, [0, 1, 4]), (1, [2, 3])):  # chunks [0, 1], [2, 3], [4] dealt round-robin
        rows = [json.loads(line) for line in (out / f"metadata.rank{rank}.jsonl").read_text().splitlines()]
        assert sorted(r["index"] for r in rows) == expected
    merged = [json.loads(line) for line in gen.merge(out, len(PROMPTS)).read_text().splitlines()]
    assert [r["index"] for r in merged] == list(range(5)) and [r["prompt"] for r in merged] == PROMPTS
    assert [r["seed"] for r in merged] == [3 + i for i in range(5)]

    # the same prompts from one process, with the same thread count: the same chunks, so the same bytes
    single = tmp_path / "single"
    p = subprocess.run([sys.executable, "-m", "skrr.eval.generate", "generate", "--out", str(single), "--prompts",
                        str(prompt_file), "--pipeline", "tiny_pixart", *SAMPLER], capture_output=True, text=True,
                       env=env, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0, p.stderr[-3000:]
    for i in range(5):
        assert (out / gen.image_name(i)).read_bytes() == (single / gen.image_name(i)).read_bytes(), i
    assert np.abs(pixels(out / gen.image_name(0)) - pixels(out / gen.image_name(1))).mean() > 1


def test_skrr_run_under_torchrun_shards_every_image_stage(tmp_path):
    """`torchrun --nproc_per_node 2 -m skrr.experiments.cli.run ...`: both ranks generate, rank 0 merges, scores, stores."""
    from skrr.experiments.runner.results import load_results
    from skrr.models.tiny import tiny_pipeline_dir

    tiny_pipeline_dir("tiny_pixart")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "skrr.experiments.cli.run", f"paths.root={tmp_path}", "method=finercut", "sparsity=[0.3]",
                        "calibration.size=8", "eval.metrics=[clip,dreamsim]", "progress=false", "eval.sampler.batch_size=2",
                        "eval.prompts.text=[a red cube,two blue balls,a cat on a mat]"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0, p.stderr[-3000:]
    rows = load_results(tmp_path / "results" / "adhoc.jsonl")
    assert len(rows) == 1 and set(rows[0]["metrics"]) == {"clip", "dreamsim"}  # stored once, by rank 0
    for folder in (Path(rows[0]["artifacts"]["images"]) / "text", Path(rows[0]["artifacts"]["dense_images"]) / "text"):
        assert sorted(f.name for f in folder.glob("metadata.rank*.jsonl")) == ["metadata.rank0.jsonl",
                                                                               "metadata.rank1.jsonl"]
        assert len([json.loads(line) for line in (folder / gen.METADATA).read_text().splitlines()]) == 3
    log = [json.loads(line) for line in (tmp_path / "stage_log.jsonl").read_text().splitlines()]
    assert sum(e["stage"] == "images" for e in log) == 2 and sum(e["stage"] == "plans" for e in log) == 1
