"""Multi-process generation: two real ranks under torchrun (RANK/WORLD_SIZE from the launcher) each
generate their shard with the tiny pipeline, then merge; the shards match a single-process run.
(tests/test_eval_generate.py covers the shard arithmetic and resume in one process.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from eval import generate as gen

PROMPTS = ["a red cube", "two blue balls", "a cat on a mat", "a green tree", "a yellow car"]
SAMPLER = ["--height", "16", "--width", "16", "--steps", "2", "--batch-size", "2", "--seed", "3", "--device", "cpu"]


def pixels(path):
    return np.asarray(Image.open(path), dtype=np.int16)


def test_torchrun_two_ranks_then_merge_equals_single_process(tmp_path):
    from skrr.tiny import tiny_pipeline_dir

    tiny_pipeline_dir("tiny_pixart")  # build the cached tiny pipeline once, before two processes load it
    prompt_file = tmp_path / "prompts.txt"
    prompt_file.write_text("\n".join(PROMPTS) + "\n")
    out = tmp_path / "sharded"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    p = subprocess.run([*torchrun, "-m", "eval.generate", "generate", "--out", str(out), "--prompts", str(prompt_file),
                        "--pipeline", "tiny_pixart", *SAMPLER], capture_output=True, text=True, env=env, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0, p.stderr[-3000:]
    for rank, expected in ((0, [0, 2, 4]), (1, [1, 3])):  # each process wrote only its own indices
        rows = [json.loads(line) for line in (out / f"metadata.rank{rank}.jsonl").read_text().splitlines()]
        assert sorted(r["index"] for r in rows) == expected
    merged = [json.loads(line) for line in gen.merge(out, len(PROMPTS)).read_text().splitlines()]
    assert [r["index"] for r in merged] == list(range(5)) and [r["prompt"] for r in merged] == PROMPTS
    assert [r["seed"] for r in merged] == [3 + i for i in range(5)]

    # the same indices from one process: same seeds -> the same images (up to batch round-off)
    single = tmp_path / "single"
    p = subprocess.run([sys.executable, "-m", "eval.generate", "generate", "--out", str(single), "--prompts",
                        str(prompt_file), "--pipeline", "tiny_pixart", "--rank", "0", "--world-size", "1", *SAMPLER],
                       capture_output=True, text=True, env=env, timeout=300, cwd=Path(__file__).resolve().parents[1])
    assert p.returncode == 0, p.stderr[-3000:]
    for i in range(5):
        assert np.abs(pixels(out / gen.image_name(i)) - pixels(single / gen.image_name(i))).max() <= 2
    assert np.abs(pixels(out / gen.image_name(0)) - pixels(out / gen.image_name(1))).mean() > 1
