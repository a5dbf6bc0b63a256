"""Bad input to a console script is refused the same way every time: exit status 2, one `error:`
line naming what to fix, nothing on stdout, and (where the input alone decides) before torch,
transformers or diffusers is imported."""
import subprocess
import sys
from pathlib import Path

import pytest

from skrr.experiments.cli.app import CONF_DIR

HEAVY = ("torch", "transformers", "diffusers")
# runs a console script's main() and reports, on exit, which heavy libraries it had imported
WRAPPER = f"""
import atexit, importlib, sys
atexit.register(lambda: sys.stderr.write("imported: " + " ".join(m for m in {HEAVY!r} if m in sys.modules) + "\\n"))
app = importlib.import_module("skrr.experiments.cli." + sys.argv[1])
sys.argv = ["skrr-" + sys.argv[1], *sys.argv[2:]]
app.main()
"""


def refuse(tmp_path: Path, script: str, *args: str) -> tuple[str, list[str]]:
    """(the one error line, the heavy libraries imported) of a refused command."""
    root = [f"paths.root={tmp_path / 'runs'}"] if script in ("prune", "run") else []  # the others write no runs/
    p = subprocess.run([sys.executable, "-c", WRAPPER, script, *root, *args],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    lines = p.stderr.splitlines()
    assert p.returncode == 2 and p.stdout == "", (args, p.returncode, p.stdout, p.stderr[-2000:])
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("imported:"), p.stderr[-2000:]
    return lines[0], lines[1].removeprefix("imported:").split()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("inputs")
    (root / "one.txt").write_text("a red cat on a table\n")
    return root


CASES = [  # (script, arguments, words the error line holds): the ten and their neighbours
    ("prune", ["method.sparsity=1.0"], "method.sparsity must be in [0, 1), got 1.0"),
    ("prune", ["method.sparsity=[0.2,-0.1]"], "method.sparsity must be in [0, 1), got -0.1"),
    ("prune", ["method.beam_width=0"], "method.beam_width must be a whole number >= 1"),
    ("prune", ["+method.beam_widht=3"], "method.beam_widht is not a setting of Skrr; did you mean beam_width?"),
    ("prune", ["method.beam_widht=3"], "method.beam_widht is not a key of the config (did you mean method.beam_width?)"),
    ("prune", ["method=skrrr"], "unknown method 'skrrr'; choose from"),
    ("prune", ["model=tiny_pixar"], "unknown model 'tiny_pixar'; choose from"),
    ("prune", ["method=shortgpt", "method.bi=published"], "method.bi must be one of raw, reference"),
    ("prune", ["method=laco", "method.C=1"], "method.C must be a whole number >= 2"),
    ("prune", ["calibration=coco", "calibration.path=/no/captions_train2014.json"], "not found (calibration.path)"),
    ("prune", ["calibration=file", "calibration.path={files}/one.txt"], "holds only 1 prompt"),
    ("prune", ["method=preset", "method.plan={files}/none.json"], "plan file not found"),
    ("run", ["-m", "method=skrr,skrrr"], "unknown method 'skrrr'"),
    ("run", ["sparsity=[0.2,1.0]"], "sparsity must be in [0, 1)"),
    ("run", ["eval.sampler.heigth=32"], "eval.sampler.heigth is not a key of the config (did you mean eval.sampler.height?)"),
    ("run", ["experiment=table1_pixart", "model=tiny_pixart", "eval=smoke"], "calibration=coco needs calibration.path"),
    ("inspect", ["model=tiny_pixart", "plan={files}/none.json"], "plan file not found"),
    ("inspect", ["model=pixart_sigm"], "unknown model 'pixart_sigm'"),
    ("report", ["{files}/none.jsonl"], "no results file at"),
    ("push", ["{files}/none", "user/repo"], "is not a folder"),
]


@pytest.mark.parametrize("script,args,words", CASES, ids=[" ".join(c[1]) for c in CASES])
def test_refused_in_one_line_before_torch(tmp_path, files, script, args, words):
    line, heavy = refuse(tmp_path, script, *[a.format(files=files) for a in args])
    assert words in line, line
    assert heavy == [], f"{line!r} came after importing {heavy}"
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.json"))  # nothing made


def test_a_plan_for_another_encoder_is_refused_the_same_way(tmp_path):
    """Which encoder a plan fits is known only once the model is built: the libraries load, but the
    refusal is the same one line and exit status 2 (no blank lines from building a tiny twin)."""
    from skrr import Plan

    plan = tmp_path / "plan.json"
    Plan(skip=[0], encoder={"name": "tiny_pixart", "config_hash": "0" * 16, "num_sub_blocks": 12}).save(plan)
    line, _ = refuse(tmp_path, "inspect", "model=tiny_sd3", f"plan={plan}")
    assert "plan was made for encoder 'tiny_pixart'" in line, line


def test_help_imports_no_heavy_library(tmp_path):
    for script in ("prune", "run", "inspect"):
        p = subprocess.run([sys.executable, "-c", WRAPPER, script, "--help"], capture_output=True, text=True,
                           cwd=Path(CONF_DIR).parent, timeout=600)
        assert p.returncode == 0 and "Powered by Hydra" in p.stdout, p.stderr[-2000:]
        assert p.stderr.strip() == "imported:", (script, p.stderr[-500:])


def test_no_documented_command_is_refused_by_the_command_line_check():
    """Every skrr-prune, skrr-run and skrr-inspect command of the docs passes the pre-check (a sweep
    composes once per swept value): it refuses typos, never what the docs tell a user to type."""
    import shlex

    from test_docs import DOCS, bash_blocks, commands

    from skrr.experiments.cli.app import check_command_line

    checked = 0
    for path in DOCS:
        for line in (c for block in bash_blocks(path) for c in commands(block)):
            tokens = shlex.split(line)
            script = next((t for t in tokens if t in ("skrr-prune", "skrr-run", "skrr-inspect")), None)
            if script is None or any("$" in t or "{" in t for t in tokens):
                continue  # shell variables and placeholders: not a command as typed
            args = tokens[tokens.index(script) + 1:]
            try:
                check_command_line(script.removeprefix("skrr-"), args)
            except SystemExit as e:
                pytest.fail(f"{path.name}: {line!r} refused (exit {e.code})")
            checked += 1
    assert checked > 10  # the docs hold about twenty; a floor, so a broken parser cannot pass by finding none
