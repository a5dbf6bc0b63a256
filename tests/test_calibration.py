"""Calibration prompts and the on-disk cache of dense targets."""
import json

import pytest
import torch
from listed_prompts import select_prompts
from omegaconf import OmegaConf

from skrr.models import load_text_side
from skrr.prompts.files import load_prompt_file
from skrr.search.calibration import build_calibration


def test_cache_is_reused_and_follows_the_weights(tmp_path, monkeypatch):
    ts = load_text_side("tiny_pixart")
    prompts = ["a red cat on a table", "two dogs", "a blue car near a river"]
    first = build_calibration(ts, prompts, cache_dir=tmp_path)
    calls = []
    monkeypatch.setattr("skrr.search.calibration.embed", lambda *a, **k: calls.append(1) or torch.zeros(1))
    again = build_calibration(ts, prompts, cache_dir=tmp_path)
    assert not calls and torch.equal(first.target, again.target)  # served from disk

    with torch.no_grad():  # another checkpoint under the same model name must not hit the cache
        next(ts.encoder.parameters()).add_(0.01)
    build_calibration(ts, prompts, cache_dir=tmp_path)
    assert calls, "dense targets of changed weights were served from a stale cache"


def test_targets_are_the_projected_pipeline_embeddings(tmp_path):
    ts = load_text_side("tiny_pixart")
    calib = build_calibration(ts, ["a photo of a cat"], cache_dir=tmp_path)
    tok = ts.tokenize(["a photo of a cat"])
    with torch.no_grad():
        expected = ts.projection(ts.encoder(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"])[0])
    # computed cut to the prompt's real length (PixArt passes the mask): the same up to rounding
    # on every attended token
    attend = tok["attend"][0]
    assert 0 < attend.sum() < attend.numel()
    assert torch.allclose(calib.target[0, attend], expected[0, attend].float(), atol=1e-6, rtol=1e-5)
    assert calib.null_tokens["attend"].sum() == 1  # the empty prompt attends to </s> only


def test_prompt_files_filters_and_sampling(tmp_path):
    (tmp_path / "p.txt").write_text("short one\n\nsomething a little longer than that\n")
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps({"caption": c}) for c in ["a", "b c d"]))
    assert load_prompt_file(tmp_path / "p.txt") == ["short one", "something a little longer than that"]
    assert load_prompt_file(tmp_path / "p.jsonl", "caption") == ["a", "b c d"]
    with pytest.raises(KeyError, match="calibration.column"):
        load_prompt_file(tmp_path / "p.jsonl")
    with pytest.raises(FileNotFoundError):
        load_prompt_file(tmp_path / "missing.txt")
    cfg = OmegaConf.create({"size": 1, "seed": 0, "min_tokens": 3, "max_tokens": None})
    assert select_prompts(["a", "b c d", "e"], cfg, token_length=lambda p: len(p.split())) == ["b c d"]
    cfg.min_tokens = 10
    with pytest.raises(ValueError, match="min_tokens"):
        select_prompts(["a"], cfg, token_length=lambda p: len(p.split()))
    cfg = OmegaConf.create({"size": 3, "seed": 7, "min_tokens": None, "max_tokens": None})
    pool = [str(i) for i in range(50)]
    assert select_prompts(pool, cfg) == select_prompts(pool, cfg) != select_prompts(pool, OmegaConf.merge(cfg, {"seed": 8}))


def test_weights_fingerprint_follows_every_kind_of_change():
    from skrr.search.calibration import weights_fingerprint

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(300, 500), torch.nn.LayerNorm(500))
    base = weights_fingerprint(model)
    assert weights_fingerprint(model) == base == weights_fingerprint(__import__("copy").deepcopy(model))
    w = model[0].weight
    changes = {
        "first row": lambda: w[0, 7].add_(1e-3),
        "last row": lambda: w[-1, 3].add_(1e-3),
        "a sampled element": lambda: w.view(-1)[(w.numel() // 4099) * 1000].add_(1e-3),
        "retrained (all elements)": lambda: w.add_(torch.randn_like(w) * 1e-4),
        "a norm weight": lambda: model[1].weight[250].add_(1e-3),
    }
    for what, change in changes.items():
        before = [p.detach().clone() for p in model.parameters()]
        with torch.no_grad():
            change()
        assert weights_fingerprint(model) != base, what
        with torch.no_grad():
            for p, b in zip(model.parameters(), before):
                p.copy_(b)
        assert weights_fingerprint(model) == base
    assert weights_fingerprint(model.to(torch.bfloat16)) != base  # dtype is part of it


PROMPTS = ["a red cat on a table", "two dogs", "a blue car near a river"]
TORN_WRITER = f"""
import io, os, sys, time, torch
from skrr.search.calibration import build_calibration
from skrr.models import load_text_side
save = torch.save
def torn_save(obj, f):  # half the bytes on disk, then wait to be killed
    buf = io.BytesIO(); save(obj, buf)
    f = open(f, "wb") if isinstance(f, (str, os.PathLike)) else f
    f.write(buf.getvalue()[: len(buf.getvalue()) // 2]); f.flush()
    print("mid-write", flush=True); time.sleep(600)
torch.save = torn_save
build_calibration(load_text_side("tiny_pixart"), {PROMPTS!r}, cache_dir=sys.argv[1])
"""


def test_a_kill_mid_write_leaves_no_cache_a_later_run_would_trust(tmp_path, monkeypatch):
    import os
    import signal
    import subprocess
    import sys

    writer = subprocess.Popen([sys.executable, "-c", TORN_WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "mid-write"
        os.kill(writer.pid, signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=60)
    left = os.listdir(tmp_path)
    assert left and all(name.startswith(".") for name in left)  # only the torn temporary, never a `.pt`

    calls = []
    real_embed = __import__("skrr.search.calibration", fromlist=["embed"]).embed
    monkeypatch.setattr("skrr.search.calibration.embed", lambda *a, **k: calls.append(1) or real_embed(*a, **k))
    ts = load_text_side("tiny_pixart")
    calib = build_calibration(ts, PROMPTS, cache_dir=tmp_path)
    assert calls  # computed, not read from the torn file
    assert torch.equal(calib.target, build_calibration(ts, PROMPTS, cache_dir=tmp_path / "fresh").target)


def test_a_damaged_cache_is_computed_again_not_fatal(tmp_path):
    ts = load_text_side("tiny_pixart")
    first = build_calibration(ts, PROMPTS, cache_dir=tmp_path)
    (cache,) = tmp_path.glob("*.pt")
    cache.write_bytes(cache.read_bytes()[:100])  # damage no killed writer of ours could cause
    with pytest.warns(UserWarning, match="unreadable"):
        again = build_calibration(ts, PROMPTS, cache_dir=tmp_path)
    assert torch.equal(first.target, again.target)
    assert torch.equal(torch.load(cache)["target"], first.target)  # and the cache is whole again
