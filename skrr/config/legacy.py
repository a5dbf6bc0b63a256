"""Module names from before the re-layout into sub-packages (skrr 0.1): configs, saved runs and
plug-ins written then name classes as `experiments.efficiency.Efficiency` or `skrr.tiny.TinyPipeline`.

`current_name` turns such a dotted name (or a `pkg:<package>/...` path) into today's, so old
`_target_`s still build; `key_name` turns today's name back into the old one, so a stage's cache key
(a hash of its config, class names included) is the key it had before the move and a store written
then is reused, not recomputed."""
from __future__ import annotations

# modules that configs named and that moved inside their layer (the rest of the upper layers only
# gained the `skrr.` prefix); skrr.prompts and skrr.search, now packages, were never named by a config
MOVED = {
    "skrr.tiny": "skrr.models.tiny",
    "skrr.prompt_sources": "skrr.prompts.sources",
    "experiments.efficiency": "skrr.experiments.runner.efficiency",
    "experiments.slurm": "skrr.experiments.runner.slurm",
    "experiments.plan_d": "skrr.experiments.runner.plan_d",
    "experiments.train_toyworld": "skrr.experiments.toyworld.train",
    "experiments.train_toyworld_v2": "skrr.experiments.toyworld.train_v2",
}
UPPER = ("baselines", "eval", "experiments")  # installed under skrr. since the re-layout
PKG = "pkg:"


def _swap(name: str, table: dict[str, str]) -> str | None:
    for old, new in table.items():
        if name == old or name.startswith(old + "."):
            return new + name[len(old):]
    return None


def current_name(name: str) -> str:
    """Today's dotted name (or `pkg:` path) for one written before the re-layout; others unchanged."""
    if name.startswith(PKG):
        package, sep, rest = name[len(PKG):].partition("/")
        return PKG + current_name(package) + sep + rest
    moved = _swap(name, MOVED)
    if moved is not None:
        return moved
    if name.split(".")[0] in UPPER and name.count(".") >= 1:
        return "skrr." + name
    return name


def key_name(name: str) -> str:
    """The pre-re-layout name of today's dotted name (or `pkg:` path): what cache keys hash."""
    if name.startswith(PKG):
        package, sep, rest = name[len(PKG):].partition("/")
        return PKG + key_name(package) + sep + rest
    moved = _swap(name, {new: old for old, new in MOVED.items()})
    if moved is not None:
        return moved
    head, _, rest = name.partition(".")
    if head == "skrr" and rest.split(".")[0] in UPPER:
        return rest
    return name


def key_names(node):
    """`node` (plain dicts, lists, strings) with every dotted name as `key_name` gives it."""
    if isinstance(node, dict):
        return {k: key_names(v) for k, v in node.items()}
    if isinstance(node, list):
        return [key_names(v) for v in node]
    if isinstance(node, str) and (node.startswith(("skrr.", PKG)) and " " not in node):
        return key_name(node)
    return node
