"""The layers stand on the ones below, and no module imports itself back through others.

    skrr.experiments   (experiments/)  entry points, run machinery, report, toy world
    skrr.baselines     (baselines/)    ShortGPT, LaCo, FinerCut      skrr.eval (eval/)  metrics, generation
    skrr               (skrr/)         the core

Checked on the source of every module of every package, imports inside functions included."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"skrr": "skrr", "skrr.baselines": "baselines", "skrr.eval": "eval", "skrr.experiments": "experiments"}
RANK = {"skrr": 0, "skrr.baselines": 1, "skrr.eval": 1, "skrr.experiments": 2}
# the one core module that names the upper layers' old module paths, as data, to map them to today's
LEGACY = ROOT / "skrr" / "config" / "legacy.py"


def layer(module: str) -> str:
    """The layer a dotted module name belongs to."""
    for name in ("skrr.baselines", "skrr.eval", "skrr.experiments"):
        if module == name or module.startswith(name + "."):
            return name
    return "skrr"


def project_modules() -> dict[str, Path]:
    """Every module of the project by its installed dotted name."""
    modules = {}
    for package, folder in FOLDERS.items():
        for path in (ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([package, *parts])] = path
    return modules


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `module` imports anywhere in its source (relative imports resolved;
    `from package import submodule` counts as the submodule)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != module:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {m: imports_of(m, p, set(modules)) for m, p in modules.items()}


def import_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once)."""
    cycles, seen = [], set()

    def walk(node, path):
        for nxt in sorted(edges.get(node, ())):
            if nxt in path:
                cycle = path[path.index(nxt):]
                if frozenset(cycle) not in seen:
                    seen.add(frozenset(cycle))
                    cycles.append(cycle + [nxt])
            elif len(path) < 16:
                walk(nxt, path + [nxt])

    for start in sorted(edges):
        walk(start, [start])
    return cycles


def test_no_layer_imports_a_layer_above_or_beside_it():
    bad = [f"{m} imports {t}" for m, targets in graph().items() for t in sorted(targets)
           if layer(t) != layer(m) and RANK[layer(t)] >= RANK[layer(m)]]
    assert not bad, "\n".join(bad)


def test_no_import_circles_anywhere():
    cycles = import_cycles(graph())
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_every_import_form_and_the_finder_a_lazy_circle():
    known = {"skrr.plan", "skrr.experiments.cli.run", "skrr.eval.fid", "skrr.search", "skrr.search.compute",
             "skrr.search.discrepancy"}
    path = ROOT / "skrr" / "search" / "discrepancy.py"
    source = ("import skrr.experiments.cli.run\nfrom . import compute\ndef f():\n    from skrr.eval.fid import FID\n"
              "    import numpy\nfrom skrr.plan import Plan\n")
    tmp = path.with_name("_probe_layers.py")
    try:
        tmp.write_text(source)
        assert imports_of("skrr.search.discrepancy", tmp, known) == \
            {"skrr.experiments.cli.run", "skrr.search.compute", "skrr.eval.fid", "skrr.plan"}
    finally:
        tmp.unlink()
    assert import_cycles({"skrr.plan": {"skrr.presets"}, "skrr.presets": {"skrr.plan"}}) == \
        [["skrr.plan", "skrr.presets", "skrr.plan"]]


def test_nothing_imports_the_upper_layers_by_their_folder_names():
    """`eval`, `experiments` and `baselines` install as skrr.*; importing them by the folder name
    would load a second copy of each module when run from the repository root."""
    bare = re.compile(r"^\s*(from|import) (baselines|eval|experiments)\b", re.M)
    folders = [ROOT / f for f in ("skrr", "baselines", "eval", "experiments", "tests", "benchmarks")]
    bad = [str(p.relative_to(ROOT)) for d in folders for p in d.rglob("*.py") if bare.search(p.read_text())]
    assert not bad, bad


def test_the_core_holds_no_toy_world():
    assert not list((ROOT / "skrr").rglob("*toyworld*"))
    text = "\n".join(p.read_text() for p in (ROOT / "skrr").rglob("*.py") if p != LEGACY)
    assert "toyworld" not in text and "toy world" not in text.lower()


ABOVE = re.compile(r"\b(skrr\.)?(baselines|eval|experiments)[./:][A-Za-z_]")


def test_the_core_names_no_module_above_it_even_in_strings():
    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in sorted((ROOT / "skrr").rglob("*.py")) if p != LEGACY
           for i, line in enumerate(p.read_text().splitlines(), 1) if ABOVE.search(line)]
    assert not bad, "\n".join(bad)
