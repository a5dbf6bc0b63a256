"""The layers stand on the ones below: skrr (the core) imports nothing of baselines, eval or
experiments; baselines and eval import only skrr; experiments sits on top. Checked on the source
of every module (imports inside functions included)."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {"skrr": {"skrr"}, "baselines": {"skrr", "baselines"}, "eval": {"skrr", "eval"},
           "experiments": {"skrr", "baselines", "eval", "experiments"}}


def imported_packages(source: str, own: str) -> set[str]:
    """Top-level packages of this project that a module of package `own` imports (relative
    imports stay in its own)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(own if node.level else node.module.split(".")[0])
    return found & set(ALLOWED)


def test_no_layer_imports_a_layer_above_it():
    bad = []
    for package, allowed in ALLOWED.items():
        for path in sorted((ROOT / package).rglob("*.py")):
            bad += [f"{path.relative_to(ROOT)} imports {p}"
                    for p in sorted(imported_packages(path.read_text(), package) - allowed)]
    assert not bad, "\n".join(bad)


def test_the_checker_sees_every_import_form():
    source = "import experiments.run\nfrom . import x\ndef f():\n    from eval.fid import FID\n    import numpy\n"
    assert imported_packages(source, "skrr") == {"experiments", "skrr", "eval"}


def test_the_core_holds_no_toy_world():
    assert not list((ROOT / "skrr").rglob("*toyworld*"))
    text = "\n".join(p.read_text() for p in (ROOT / "skrr").rglob("*.py"))
    assert "toyworld" not in text and "toy world" not in text.lower()
