"""W&B logging really runs wandb.init/log/finish (offline), and a W&B failure never loses results."""
import json
import warnings

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from skrr.experiments.cli.app import CONF_DIR
from skrr.experiments.cli.run import run_job
from skrr.experiments.runner.logging_wandb import log_run, scalars
from skrr.experiments.runner.results import load_results


def fake_row(tmp_path):
    for kind in ("pruned", "dense"):
        (tmp_path / kind / "text").mkdir(parents=True)
        for i in range(2):
            pixels = np.random.default_rng(i).integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / kind / "text" / f"{i:05d}.png")
    return {"run_key": "abc123def", "experiment": "t", "model": "tiny_pixart", "method": "skrr", "target": 0.3,
            "sparsity": 0.31, "metrics": {"clip": 0.25, "geneval": {"counting": 0.5, "overall": 0.4}},
            "timings": {"plan": 1.5}, "plan": {"depth_d": [1e-4, 1e-3, 1e-2]},
            "config": {"method": {"name": "skrr", "beam_width": 3}},
            "artifacts": {"images": str(tmp_path / "pruned"), "dense_images": str(tmp_path / "dense")}}


def test_offline_run_logs_config_scalars_curve_and_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wb"))
    cfg = {"name": "wandb", "project": "skrr-test", "entity": None, "mode": "offline", "group": None,
           "dir": str(tmp_path / "wb"), "num_samples": 8, "tags": ["test"]}
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a swallowed failure would show up as a warning
        assert log_run(cfg, fake_row(tmp_path), prompts=["a red cube", "a cat", "missing image"])
    import wandb

    wandb.teardown()  # stop the wandb service so its offline log is flushed to disk before we read it
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("run-*.wandb"))
    record = list(runs[0].glob("run-*.wandb"))[0].read_bytes()  # the offline transaction log
    for logged in (b"metrics/clip", b"metrics/geneval/overall", b"search/D", b"beam_width", b"t-tiny_pixart"):
        assert logged in record, logged  # scalars, D curve, config, group per sweep
    tables = list((runs[0] / "files" / "media" / "table").glob("samples_*.table.json"))
    table = json.loads(tables[0].read_text())
    assert table["columns"] == ["prompt", "dense", "pruned"]
    assert [r[0] for r in table["data"]] == ["a red cube", "a cat"]  # only prompts with an image on disk


def test_scalars_flatten_nested_metrics():
    assert scalars({"fid": {"value": 3.0, "ci": [2.5, 3.6]}, "geneval": {"overall": {"value": 0.5, "ci": [0.4, 0.6]}}}) \
        == {"fid": 3.0, "fid/ci_lo": 2.5, "fid/ci_hi": 3.6, "geneval/overall": 0.5, "geneval/overall/ci_lo": 0.4,
            "geneval/overall/ci_hi": 0.6}
    assert scalars({"fid": 3.0, "geneval": {"overall": 0.5}, "skip": "x", "flag": True}, "m/") == \
        {"m/fid": 3.0, "m/geneval/overall": 0.5}


def test_wandb_failure_warns_and_results_are_kept(tmp_path, monkeypatch):
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", broken)
    with pytest.warns(UserWarning, match="W&B logging failed"):
        assert not log_run({"project": "p", "dir": str(tmp_path)}, fake_row(tmp_path))
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="run", overrides=[f"paths.root={tmp_path / 'runs'}", "method=dense", "logger=wandb",
                                                    "eval.metrics=[efficiency]", "progress=false"])
    with pytest.warns(UserWarning, match="no network"):
        rows = run_job(cfg, "wb")
    stored = load_results(tmp_path / "runs" / "results" / "wb.jsonl")
    assert [r["run_key"] for r in stored] == [rows[0]["run_key"]]
    assert stored[0]["metrics"]["efficiency"]["pipeline_params"] > 0
