"""README.md runs as written: its Quick start, its offline check and its Python example, taken from
the README itself (not copied here), run in that order in a fresh directory, each command exactly
as printed. What the README's comments promise (the parameter count, the number of result rows)
is checked against what the commands print and write."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from test_docs import commands  # the same reading of a bash block as the docs checker

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
BIN = Path(sys.executable).parent  # the console scripts beside this interpreter


def section(title: str) -> str:
    """The README's text under `## title`, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## )", README, re.S | re.M)
    assert match, f"README.md has no section {title!r}"
    return match.group(1)


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


QUICK_START = blocks(section("Quick start"), "bash")[0]
PYTHON_EXAMPLE = blocks(section("Quick start"), "python")[0]
OFFLINE_CHECK = blocks(section("Reproduce the paper on a GPU"), "bash")[0]  # "Check the chain offline first"


def run(line: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(["bash", "-c", line], cwd=cwd, env=env, capture_output=True, text=True, timeout=3600)
    assert done.returncode == 0, f"README command failed ({done.returncode}): {line}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def promised(block: str, pattern: str) -> str:
    """A number the README's comment on a command promises (`# 13 result rows`)."""
    match = re.search(pattern, block)
    assert match, f"the README no longer says {pattern!r}"
    return match.group(1)


def test_the_blocks_are_the_ones_a_newcomer_reads():
    assert commands(QUICK_START)[1].startswith("skrr-prune ") and "skrr-inspect" in commands(QUICK_START)[2]
    assert commands(OFFLINE_CHECK)[0].startswith("skrr-run ") and "Check the chain offline" in section(
        "Reproduce the paper on a GPU").split("```bash")[0]
    assert "skrr.Plan.load(" in PYTHON_EXAMPLE


@pytest.mark.readme  # two sweeps (the demo, the tiny Table 1): `make test-readme`
def test_quick_start_offline_check_and_python_example_run_in_order(tmp_path):
    outputs = [run(line, tmp_path) for line in commands(QUICK_START)]
    parameters = promised(QUICK_START, r"skrr-inspect model=pixart_sigma\s+# \d+ sub-blocks of \S+, ([\d,]+) parameters")
    assert f"encoder parameters: {parameters}" in outputs[0]
    assert re.search(r"^sparsity: \d+\.\d\d%$", outputs[2], re.M), outputs[2]  # the plan skrr-prune just wrote

    for line in commands(OFFLINE_CHECK):
        run(line, tmp_path)
    experiment = promised(OFFLINE_CHECK, r"experiment=(\S+)")
    rows = (tmp_path / "runs" / "results" / f"{experiment}.jsonl").read_text().splitlines()
    assert len(rows) == int(promised(OFFLINE_CHECK, r"# (\d+) result rows"))
    assert (tmp_path / "runs" / "reports" / experiment).is_dir()

    script = tmp_path / "example.py"
    script.write_text(PYTHON_EXAMPLE + "\nimage.save('example.png')\n")
    run(f"{sys.executable} {script}", tmp_path)
    assert (tmp_path / "example.png").stat().st_size > 0 and (tmp_path / "pruned" / "config.json").is_file()


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
