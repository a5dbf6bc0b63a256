"""No silent garbage: NaN/inf in the calibration targets, in D or in a metric's value stops the work in
one line naming the stage and the likely setting, and nothing is written; bad numbers fail in one line
naming the key before any pipeline loads (the real console scripts, a fresh cache that must stay
empty); a calibration set smaller than asked is an error; a model's `sampler:` is its default."""
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from listed_prompts import select_prompts
from test_run import compose_run
from test_skrr import output_weight, seeded_model, setup, text_side

from skrr.eval.metrics import Metric, computed
from skrr.experiments.cli.app import CONF_DIR, fail_fast
from skrr.experiments.cli.run import run_job
from skrr.experiments.runner import stages as S
from skrr.experiments.runner.checks import check_config
from skrr.models.tiny import _corpus
from skrr.plan import make_schedule
from skrr.search.calibration import build_calibration
from skrr.search.finite import NotFinite, check_finite
from skrr.search.prefix_cache import PrefixCachedDiscrepancy

REPO = Path(CONF_DIR).parent
BIN = Path(sys.executable).parent



def one_error_line(stderr: str) -> str:
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and stderr.rstrip().endswith(errors[0]), stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return errors[0]


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) if root.exists() else []


# --- bad numbers: the console scripts, before anything loads ------------------------------------
@pytest.mark.parametrize("script,args,key", [
    ("skrr-prune", ["model=tiny_pixart", "method=skrr", "method.batch_size=-1"], "method.batch_size"),
    ("skrr-run", ["eval.sampler.batch_size=0"], "eval.sampler.batch_size"),
    ("skrr-run", ["eval.sampler.num_inference_steps=-3"], "eval.sampler.num_inference_steps"),
    ("skrr-run", ["model=tiny_sana", "eval.sampler.height=48"], "eval.sampler.height"),
    ("skrr-prune", ["method.sparsity=[0.3,nan]"], "method.sparsity"),
])
def test_console_scripts_refuse_bad_numbers_before_anything_loads(tmp_path, script, args, key):
    cache, root = tmp_path / "cache", tmp_path / "runs"
    cache.mkdir()  # empty: loading (building) any tiny pipeline would write here
    env = {**os.environ, "SKRR_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = [str(BIN / script)] if (BIN / script).exists() else [sys.executable, "-m", f"experiments.{script[5:]}"]
    start = time.perf_counter()
    p = subprocess.run([*command, f"paths.root={root}", *args], capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=300)
    seconds = time.perf_counter() - start
    assert p.returncode == 2, p.stderr[-3000:]
    line = one_error_line(p.stderr)
    assert line.startswith(f"error: {key} must"), line
    assert not any(cache.iterdir()), "a pipeline or encoder was built/loaded before the check"
    assert not [f for f in files_under(root) if not f.startswith(("hydra/", "prune/"))]  # no plan, image or row
    assert not [f for f in files_under(root) if f.endswith(".json")]
    print(f"{script} {' '.join(args)}: {line!r} after {seconds:.1f} s (interpreter and imports included)")


def test_a_calibration_file_shorter_than_the_size_asked_is_refused_before_loading(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(S, "load_run_pipeline", lambda *a, **k: pytest.fail("a rejected run loaded a pipeline"))
    monkeypatch.setattr(S.Plans, "make", lambda *a, **k: pytest.fail("a rejected run started pruning"))
    one = tmp_path / "one.txt"
    one.write_text("a single prompt\n\n")
    with pytest.raises(SystemExit) as e, fail_fast():
        run_job(compose_run(tmp_path / "runs", "calibration=file", f"calibration.path={one}", "calibration.size=5"), "t")
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1
    assert "calibration.size=5" in err and "only 1 prompt;" in err and "calibration.size=1" in err, err
    assert not (tmp_path / "runs").exists()


def test_a_filtered_calibration_set_smaller_than_asked_is_refused():
    cfg = {"size": 3, "seed": 0, "source": "builtin", "min_tokens": 2, "max_tokens": None}
    from omegaconf import OmegaConf

    with pytest.raises(ValueError, match=r"calibration.size=3 but .*min_tokens/max_tokens holds only 2 prompts"):
        select_prompts(["a", "b c", "d e f"], OmegaConf.create(cfg), token_length=lambda p: len(p.split()))
    assert len(select_prompts(["a", "b c", "d e f"], OmegaConf.create({**cfg, "size": 2}),
                              token_length=lambda p: len(p.split()))) == 2


# --- NaN / inf: the stage and the likely setting, nothing written --------------------------------
def test_check_finite_counts_every_number_in_nested_values():
    assert check_finite({"a": [1.0, torch.ones(3)], "b": None, "c": "x"}, "s", "y") is not None
    with pytest.raises(NotFinite, match=r"^metric m is not finite \(2 of 5 values are nan or inf\); likely cause: z$"):
        check_finite({"v": float("nan"), "ci": [0.1, math.inf], "t": torch.zeros(2)}, "metric m", "z")


def test_a_nan_weight_stops_the_calibration_targets_and_caches_nothing(tmp_path):
    from skrr.models.tiny import t5_tokenizer

    model, projection = seeded_model()
    with torch.no_grad():
        model.encoder.block[2].layer[-1].DenseReluDense.wo.weight[0, 0] = float("nan")
    side = text_side(model, projection, t5_tokenizer())
    with pytest.raises(NotFinite) as e:
        build_calibration(side, _corpus(8, 3), cache_dir=tmp_path / "calib")
    assert str(e.value).startswith("the calibration targets f_dense(C), f_dense(null) is not finite")
    assert "likely cause: NaN/inf in the model's encoder" in str(e.value) and "\n" not in str(e.value)
    assert files_under(tmp_path / "calib") == []


@pytest.mark.parametrize("fast", [True, False])
def test_nan_in_d_stops_the_search_in_both_evaluators(tmp_path, fast):
    from skrr.models.tiny import t5_tokenizer

    model, projection = seeded_model()
    weight = output_weight(model, 5)  # the same tensor lives on in the sub-block view
    enc, disc, _ = setup(model, projection, t5_tokenizer(), tmp_path, fast=fast)
    assert isinstance(disc, PrefixCachedDiscrepancy) == fast
    parent = make_schedule(len(enc), [])
    assert all(math.isfinite(d) for d in disc.evaluate(parent, [{}, {3: None}]))
    with torch.no_grad():  # the targets are clean; the encoder turns bad afterwards (as an overflow would)
        weight[0, 0] = float("inf")
    with pytest.raises(NotFinite, match=r"^the search's discrepancy D is not finite \(\d+ of 2 values"):
        disc.evaluate(parent, [{5: None}, {3: None}])  # skipping 5 is finite, keeping it is not: one NaN is enough


POISON_AFTER_CALIBRATION = """
import sys, torch
import skrr.prune
make = skrr.prune.make_context
def poisoned(*args, **kwargs):  # clean targets, then an encoder weight turns NaN: every D is NaN
    ctx = make(*args, **kwargs)
    with torch.no_grad():
        next(iter(ctx.text_side.encoder.parameters())).fill_(float("nan"))
    return ctx
skrr.prune.make_context = poisoned
from skrr.experiments.cli.prune import main
sys.argv = ["skrr-prune", *sys.argv[1:]]
main()
"""


def test_skrr_prune_with_nan_d_exits_in_one_line_and_saves_no_plan(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", POISON_AFTER_CALIBRATION, "model=tiny_pixart", "method=skrr",
                        "method.beam_width=1", "calibration.size=8", "progress=false", f"paths.root={tmp_path}",
                        f"hydra.run.dir={tmp_path / 'run'}"], capture_output=True, text=True, env=env, cwd=REPO,
                       timeout=600)
    assert p.returncode == 2, p.stderr[-3000:]
    line = one_error_line(p.stderr)
    assert line.startswith("error: the search's discrepancy D is not finite") and "method.compute_dtype" in line
    assert not list(tmp_path.rglob("plan*.json")) and "D=nan" not in p.stderr


class NaNMetric(Metric):
    """A metric whose value is NaN (as a backbone in the wrong dtype would give)."""
    prompt_set = None

    def update(self, images, prompts, dense=None):  # reads no images (prompt_set None)
        pass

    def compute(self):
        return {"value": float("nan"), "tflops": 1.0}


def test_computed_refuses_a_nan_metric_value():
    with pytest.raises(NotFinite, match=r"^metric mine is not finite \(1 of 2 values .*likely cause: the metrics.mine"):
        computed(NaNMetric(), "mine")


def test_a_nan_metric_stops_the_run_and_stores_no_row(tmp_path, capsys):
    root = tmp_path / "runs"
    cfg = compose_run(root, "method=dense", "eval.metrics=[broken]",
                      f"+metrics.broken._target_={__name__}.NaNMetric")
    with pytest.raises(SystemExit) as e, fail_fast():
        run_job(cfg, "t")
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and err.startswith("error: metric broken is not finite"), err
    assert not (root / "results").exists()
    assert [f for f in files_under(root / "metrics") if not f.endswith(".lock")] == []  # no record, no partial value


# --- the model's own sampler -------------------------------------------------------------------
def run_cfg(*overrides):
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name="run", overrides=list(overrides))


def test_model_sampler_is_the_default_and_eval_sampler_overrides_it():
    sana = check_config(run_cfg("model=sana_1600m", "eval=paper"))
    assert dict(sana.eval.sampler) == {"height": 1024, "width": 1024, "num_inference_steps": 20, "guidance_scale": 4.5,
                                       "base_seed": 0, "batch_size": 8}
    assert sana.metrics.efficiency.height == 1024  # what efficiency measures follows the resolved sampler
    pixart = check_config(run_cfg("model=pixart_sigma", "eval=paper"))  # no model sampler: the paper's protocol
    assert (pixart.eval.sampler.height, pixart.eval.sampler.num_inference_steps, pixart.eval.sampler.guidance_scale) \
        == (512, 20, None)
    mine = check_config(run_cfg("model=sana_1600m", "eval=paper", "eval.sampler.height=512",
                                "eval.sampler.guidance_scale=2.0"))
    assert (mine.eval.sampler.height, mine.eval.sampler.width, mine.eval.sampler.guidance_scale) == (512, 1024, 2.0)
    qwen = check_config(run_cfg("model=tiny_qwen_image", "eval.sampler.height=null"))  # smoke sets 32; null: the model's
    assert (qwen.eval.sampler.height, qwen.eval.sampler.width) == (16, 32)
    with pytest.raises(ValueError, match=r"^model.sampler.steps is not a sampler setting"):
        check_config(run_cfg("model=tiny_sana", "+model.sampler.steps=3"))
    with pytest.raises(ValueError, match=r"^model.sampler.height must be .* multiple of 32 \(SanaPipeline needs it\)"):
        check_config(run_cfg("model=tiny_sana", "model.sampler.height=40", "eval.sampler.height=null"))


def test_the_row_records_the_resolved_sampler(tmp_path):
    rows = run_job(compose_run(tmp_path, "model=tiny_sana", "method=dense", "eval.metrics=[efficiency]"), "t")
    (row,) = rows
    assert row["sampler"]["guidance_scale"] == 4.5  # tiny_sana's own; eval=smoke leaves it null
    assert row["sampler"] == row["config"]["eval"]["sampler"] and row["sampler"]["height"] == 32
    assert row["config"]["metrics"]["efficiency"]["guidance_scale"] == 4.5
