"""The docs lead somewhere real: every command in a fenced bash block of README.md and docs/*.md
names a console script this package installs (or a module, make target or file that exists), each
`group=option` override of a config group names a config file that exists, and every relative
link resolves. Commands are parsed, never run."""
import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SCRIPTS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"])
GROUPS = {p.relative_to(ROOT / "conf").as_posix() for p in (ROOT / "conf").rglob("*") if p.is_dir()}
MAKE_TARGETS = set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))
OTHER_TOOLS = {"pip", "wandb", "git", "cd", "export", "nohup", "nice", "cat", "ls", "apt-get"}  # not this project's to check
LAUNCHERS = {"srun"}  # run the command after their own options: that command is checked


def bash_blocks(path: Path) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", path.read_text(), re.S)


def commands(block: str) -> list[str]:
    """Logical lines (backslash continuations joined), comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block)
    out = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
        if line:
            out.append(line)
    return out


def overrides(tokens: list[str]) -> list[tuple[str, str]]:
    """(group, option) of every `group=option` (also `+group=`, `~group`, comma sweeps) whose key is a config group."""
    out = []
    for tok in tokens:
        key, eq, value = tok.lstrip("+~").partition("=")
        if eq and key in GROUPS and not value.startswith(("$", "[", "'")):
            out += [(key, v) for v in value.split(",") if v and v != "null"]
    return out


def check_command(line: str) -> list[str]:
    """What in one command names nothing real (empty: all of it resolves)."""
    tokens = shlex.split(line)
    problems = []
    if "=" in tokens[0] and not tokens[0].startswith(("-", "+")):  # VAR="overrides ...": check the overrides inside
        tokens = [t for tok in tokens for t in shlex.split(tok.partition("=")[2] if tok == tokens[0] else tok)]
        return [f"{g}={o}: no conf/{g}/{o}.yaml" for g, o in overrides(tokens) if not (ROOT / "conf" / g / f"{o}.yaml").is_file()]
    if tokens[0] in LAUNCHERS:  # `srun -n 8 --gpus-per-task 1 python -m ...`: check from the python command on
        tokens = tokens[next((i for i, t in enumerate(tokens) if t in ("python", "python3", "torchrun")), 0):]
    head = tokens[0]
    if head.startswith(".venv/bin/") or head.startswith("$(") or head in OTHER_TOOLS:
        head = head.removeprefix(".venv/bin/")
        if head in OTHER_TOOLS:
            return []
    if head.startswith("skrr-"):
        if head not in SCRIPTS:
            problems.append(f"{head}: not a console script of pyproject.toml ({sorted(SCRIPTS)})")
    elif head == "make":
        problems += [f"make {t}: no such target" for t in tokens[1:] if not t.startswith("-") and t not in MAKE_TARGETS]
    elif head in ("python", "python3", "torchrun") or head.endswith("/python"):
        if "-m" in tokens:
            module = tokens[tokens.index("-m") + 1]
            if importlib.util.find_spec(module) is None:
                problems.append(f"python -m {module}: no such module")
        else:
            script = next((t for t in tokens[1:] if t.endswith(".py")), None)
            if script and not script.startswith("evaluation/") and not (ROOT / script).is_file():  # GenEval's own repo
                problems.append(f"{script}: no such file")
    else:
        problems.append(f"{head}: not a console script, make target or python command of this project")
    for group, option in overrides(tokens):
        if not (ROOT / "conf" / group / f"{option}.yaml").is_file():
            problems.append(f"{group}={option}: no conf/{group}/{option}.yaml")
    return problems


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:|#", t)]


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_command_names_a_real_script_and_config(path):
    problems = [f"{line!r}: {p}" for block in bash_blocks(path) for line in commands(block) for p in check_command(line)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    broken = [t for t in links(path) if not (path.parent / t.split("#")[0]).exists()]
    assert not broken, f"{path.name}: broken links {broken}"


def test_readme_is_a_front_page_that_links_every_docs_page():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    linked = {Path(t.split("#")[0]).name for t in links(ROOT / "README.md") if t.startswith("docs/")}
    assert {p.name for p in DOCS[1:]} <= linked, "README.md does not link " + \
        ", ".join(sorted({p.name for p in DOCS[1:]} - linked))


def test_the_checker_catches_what_it_should():
    assert check_command("skrr-run -m experiment=demo method=skrr,shortgpt") == []
    assert check_command("skrr-prun model=tiny_pixart")  # a typo in the script
    assert check_command("skrr-run experiment=no_such_table")  # a config that does not exist
    assert check_command("skrr-run -m method=skrr,no_such_method")
    assert check_command('CALIB="calibration=nofile calibration.path=x"')
    assert check_command("python -m skrr.experiments.no_such_module")
    assert check_command("make deploy")
    assert not check_command("make demo") and not check_command("python -m skrr.experiments.toyworld.train_v2 encoder")
