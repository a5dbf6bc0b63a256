"""skrr-run checks every input before any heavy work (one line, nothing loaded, no folder but
Hydra's), and an interrupt ends it with one line that says where it stopped and how to resume."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_run import compose_run, stage_log

from skrr.experiments.cli.app import CONF_DIR, fail_fast
from skrr.experiments.cli.run import run_job
from skrr.experiments.runner import stages as S

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}


def cli(*args):
    start = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "skrr.experiments.cli.run", *args], capture_output=True, text=True, env=ENV,
                       cwd=Path(CONF_DIR).parent, timeout=600)
    return p, time.perf_counter() - start


def only_hydra_config(root: Path) -> bool:
    return sorted(p.name for p in root.iterdir()) == ["hydra"]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cli_rejects_an_empty_sparsity_list_and_a_missing_gpu_in_one_line(tmp_path):
    for bad, words in (("sparsity=[]", "sparsity list is empty"), ("device=cuda", "device=cuda but this machine")):
        p, seconds = cli(f"paths.root={tmp_path}", bad)
        assert p.returncode == 2, p.stderr[-2000:]
        assert [words in line for line in error_lines(p.stderr)] == [True] and p.stderr.rstrip().endswith(
            error_lines(p.stderr)[0])
        assert "Traceback" not in p.stderr and "Loading" not in p.stderr, p.stderr  # no pipeline or weights loaded
        print(f"{bad}: rejected after {seconds:.1f} s (interpreter and imports included)")
    assert only_hydra_config(tmp_path)


def test_inputs_rejected_before_any_model_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(S, "load_run_pipeline", lambda *a, **k: pytest.fail("a rejected run loaded a pipeline"))
    monkeypatch.setattr(S.Plans, "make", lambda *a, **k: pytest.fail("a rejected run started pruning"))
    blank = tmp_path / "blank.txt"
    blank.write_text("\n   \n\n")
    cases = [(["sparsity=[0.2,1.0]"], "sparsity must be in [0, 1)"),
             (["method=dense", "sparsity=[]"], "sparsity list is empty"),
             (["calibration.size=0"], "calibration.size must be a whole number >= 1, got 0"),
             (["calibration=file", f"calibration.path={blank}"], "holds no prompts"),
             (["calibration=file", f"calibration.path={tmp_path / 'none.txt'}"], "not found"),
             (["calibration=file"], "calibration.path must be set"),
             (["device=cpu", "eval.device=tpu:0"], "eval.device=tpu:0")]
    if not torch.cuda.is_available():
        cases += [(["eval.device=cuda"], "eval.device=cuda but this machine has no usable CUDA GPU"),
                  (["device=cuda:0", "eval.device=cpu"], "device=cuda:0 but")]
    root = tmp_path / "runs"
    for bad, words in cases:
        with pytest.raises(SystemExit) as e, fail_fast():
            run_job(compose_run(root, *bad), "t")
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and words in err and err.count("\n") == 1, (bad, err)
    assert not root.exists()


STUCK_IN_GENERATION = """
import signal, sys, time
# Ctrl-C as a terminal delivers it: a process started in the background (nohup, `&` without job
# control, some pytest-xdist workers) inherits SIGINT ignored, and Python then installs no handler
signal.signal(signal.SIGINT, signal.default_int_handler)
import skrr.eval.generate
def stuck(*args, **kwargs):  # a known point inside the images stage
    print("generating", flush=True)
    time.sleep(600)
skrr.eval.generate.generate = stuck
from skrr.experiments.cli.run import main
sys.argv = ["skrr-run", *sys.argv[1:]]
main()
"""
RUN = ["method=dense", "eval.metrics=[clip]", "eval.prompts.text=[a red cube,a cat]", "progress=false"]


def test_ctrl_c_names_the_stage_and_the_same_command_resumes(tmp_path):
    job = subprocess.Popen([sys.executable, "-c", STUCK_IN_GENERATION, f"paths.root={tmp_path}", *RUN],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=Path(CONF_DIR).parent)
    try:
        assert job.stdout.readline().strip() == "generating"
        job.send_signal(signal.SIGINT)
        out, err = job.communicate(timeout=120)
    finally:
        job.kill()
    assert job.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    last = err.rstrip().splitlines()[-1]
    assert last.startswith("interrupted (SIGINT) in stage images/") and last.endswith("/text; finished work is kept: "
                                                                                     "run the same command again to resume")
    assert [e["stage"] for e in stage_log(tmp_path)] == ["plans"]

    rows = run_job(compose_run(tmp_path, *RUN, fast=False), "adhoc")  # the same command, this time uninterrupted
    assert [e["stage"] for e in stage_log(tmp_path)] == ["plans", "images", "metrics"]  # the plan was kept
    assert rows[0]["ran"] == ["images/text", "metrics/clip"]


def test_sigterm_ends_with_the_same_one_line_account(capsys):
    with pytest.raises(SystemExit) as e, fail_fast():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler raises long before this ends
    err = capsys.readouterr().err
    assert e.value.code == 128 + signal.SIGTERM
    assert err == "interrupted (SIGTERM); finished work is kept: run the same command again to resume\n"
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler does not outlive the app
