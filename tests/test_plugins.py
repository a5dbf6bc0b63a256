"""One way to plug things in: methods and calibration sources are `_target_` classes whose typed
constructors check their settings; a mistyped key fails when the config is built, named in full;
only the project's own input errors become one-line messages."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from skrr.config.build import check_keys, target_class
from skrr.config.files import group_option, options
from skrr.errors import ConfigError, InputError
from skrr.experiments.cli.app import fail_fast
from skrr.methods import Method, as_method, load
from skrr.prompts.sources import PromptSource, as_source

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("option", options("method"))
def test_every_method_yaml_builds_its_class(option):
    method = load(option)
    assert isinstance(method, Method)
    # what plans record: the YAML's settings, less those added later while at their default (Method.ADDED)
    assert method.settings() == method.recorded({k: v for k, v in group_option("method", option).items() if k != "_target_"})


@pytest.mark.parametrize("option", options("calibration"))
def test_every_calibration_yaml_builds_its_source(option):
    cfg = group_option("calibration", option)
    check_keys(target_class(cfg, "calibration"), list(cfg), "calibration")
    assert isinstance(as_source(cfg, missing_ok=True), PromptSource)


def test_a_mistyped_method_key_fails_at_construction_naming_it():
    with pytest.raises(ConfigError, match=r"^method.beam_widht is not a setting of Skrr; did you mean beam_width\?"):
        as_method({"name": "skrr", "beam_widht": 3})
    with pytest.raises(ConfigError, match=r"^method.beam_width must be a whole number >= 1, got 0"):
        load("skrr", beam_width=0)
    with pytest.raises(ConfigError, match=r"^calibration.sizee is not a setting of Builtin; did you mean size\?"):
        as_source({"source": "builtin", "sizee": 4})


def prune_cli(tmp_path, *overrides, env=None):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return subprocess.run([str(BIN / "skrr-prune"), "model=tiny_pixart", "calibration.size=4", "calibration.pool=40",
                           "progress=false", f"paths.root={tmp_path}", f"hydra.run.dir={tmp_path / 'run'}", *overrides],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "tests"), **(env or {})})


def test_skrr_prune_refuses_a_mistyped_key_before_any_work(tmp_path):
    done = prune_cli(tmp_path, "method=skrr", "+method.beam_widht=3")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("error: method.beam_widht is not a setting of Skrr")
    assert "Traceback" not in done.stderr and not list(tmp_path.rglob("plan*.json"))


def test_a_plugin_method_from_outside_skrr_runs_and_a_bug_in_one_keeps_its_traceback(tmp_path):
    ok = prune_cli(tmp_path / "ok", "method=dense", "method._target_=plugins.SkipFirstBlock", "method.name=skip_first",
                   "method.sparsity=0.1")
    assert ok.returncode == 0, ok.stderr
    assert "skip=[0, 1]" in ok.stdout
    bug = prune_cli(tmp_path / "bug", "method=dense", "method._target_=plugins.Broken", "method.sparsity=0.1")
    assert bug.returncode == 1
    assert "Traceback (most recent call last)" in bug.stderr and "TypeError: a bug in a method" in bug.stderr
    assert "error: a bug" not in bug.stderr


@pytest.mark.parametrize("error", [TypeError("bug"), KeyError("bug"), ValueError("from torch, say")])
def test_only_the_projects_input_errors_become_one_line_messages(error, capsys):
    with pytest.raises(type(error)), fail_fast():
        raise error
    with pytest.raises(SystemExit) as e, fail_fast():
        raise InputError("method.sparsity must be in [0, 1), got 1.5")
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: method.sparsity must be in [0, 1), got 1.5\n"
