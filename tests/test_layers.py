"""The layers stand on the ones below: skrr (the core) imports nothing of baselines, eval or
experiments; baselines and eval import only skrr; experiments sits on top. Checked on the source
of every module (imports inside functions included)."""
import ast
import re
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


# --- no circles inside the core, and the core names nothing above it, not even in a string -----
ABOVE = re.compile(r"\b(baselines|eval|experiments)[./:][A-Za-z_]")


def skrr_imports(path: Path) -> set[str]:
    """The skrr modules a skrr module imports, anywhere in it (lazy imports inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("skrr."):
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}  # `from skrr.x import submodule`
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("skrr.")}
    return found


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, from its smallest module)."""
    cycles, seen = [], set()

    def walk(node, path):
        for nxt in sorted(graph.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                key = frozenset(cycle)
                if key not in seen:
                    seen.add(key)
                    cycles.append(cycle + [nxt])
            elif len(path) < 12:
                walk(nxt, path + [nxt])

    for start in sorted(graph):
        walk(start, [start])
    return cycles


def test_no_import_circles_inside_the_core():
    modules = {f"skrr.{p.stem}": p for p in (ROOT / "skrr").glob("*.py") if p.stem != "__init__"}
    graph = {m: {i for i in skrr_imports(p) if i in modules and i != m} for m, p in modules.items()}
    cycles = import_cycles(graph)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_lazy_circle():
    assert import_cycles({"skrr.plan": {"skrr.presets"}, "skrr.presets": {"skrr.plan"}}) == \
        [["skrr.plan", "skrr.presets", "skrr.plan"]]


def test_the_core_names_no_module_above_it_even_in_strings():
    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in sorted((ROOT / "skrr").glob("*.py"))
           for i, line in enumerate(p.read_text().splitlines(), 1) if ABOVE.search(line)]
    assert not bad, "\n".join(bad)
