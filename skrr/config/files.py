"""Files shipped inside the package that code reads by path: the Hydra configs (skrr/conf, a link to
the top-level conf/, copied into wheels) and the real models' configs (skrr/configs), from which their
encoders and pipelines are built on the meta device (no weights).

The Hydra configs are read outside a Hydra app too: a Python caller's
`prune(model, {"name": "skrr", "sparsity": 0.3})` takes its defaults from the same YAML file the
command line composes, so defaults live in one place."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from skrr.errors import UnknownName

PACKAGE_DIR = Path(__file__).resolve().parent.parent
CONF_DIR = PACKAGE_DIR / "conf"
CONFIGS_DIR = PACKAGE_DIR / "configs"


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


def group_option(group: str, name: str) -> DictConfig:
    """conf/<group>/<name>.yaml with its defaults list (options of the same group, and `_self_`)
    merged in Hydra's order."""
    path = CONF_DIR / group / f"{name}.yaml"
    if not path.is_file():
        raise UnknownName(f"unknown {group} {name!r}; choose from {options(group)}")
    node = OmegaConf.load(path)
    defaults = list(node.pop("defaults", []))
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged = OmegaConf.create()
    for entry in defaults:
        merged = OmegaConf.merge(merged, node if entry == "_self_" else group_option(group, str(entry)))
    return merged
