"""Every key under conf/ is read by code: for each option of each config group, every part of every
key path (`model.sampler.height`: sampler and height) is either an argument of the class its
`_target_` builds, or read by the code that consumes that group (`.key`, `["key"]`, `get("key")`,
a `key:`/`key=` field or argument; comments and docstrings do not count), or interpolated into a
key that is (a few keys are read by Hydra itself: listed with the reason). A key nothing reads
fails here: delete it or read it."""
import inspect
import re
import sys
from pathlib import Path

import pytest
from hydra.utils import get_class
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
# group -> the code that consumes it
CONSUMERS = {"model": ["skrr", "experiments/runner/checks.py", "eval/sampler.py"], "method": ["skrr", "baselines"],
             "calibration": ["skrr/prompts/sources.py", "skrr/search/calibration.py"],
             "eval": ["eval", "experiments/cli/run.py", "experiments/runner/stages.py"], "logger": ["experiments"],
             "run.yaml": ["experiments"], "prune.yaml": ["experiments"], "inspect.yaml": ["experiments"]}
READ_BY_HYDRA = {"defaults", "hydra", "_target_",
                 "tiny",  # skrr.eval.tiny: interpolated into the metric configs (tiny backbones)
                 "experiment"}  # a defaults choice, not a value


def code_of(paths: list[str]) -> str:
    """The consumers' code without docstrings and comments (a key named in prose is not read)."""
    files = [f for p in paths for f in ([ROOT / p] if p.endswith(".py") else sorted((ROOT / p).rglob("*.py")))]
    code = "\n".join(f.read_text() for f in files)
    code = re.sub(r'"""[\s\S]*?"""|\'\'\'[\s\S]*?\'\'\'', "", code)
    return re.sub(r"#[^\n\"']*$", "", code, flags=re.M)


def reads(code: str, key: str) -> bool:
    """Whether `code` reads `key`: an attribute, a quoted name (item, get, a tuple of keys), or a
    `key:` / `key=` dataclass field, argument or keyword."""
    k = re.escape(str(key))
    return re.search(rf"""\.{k}\b|["']{k}["']|\b{k}\s*[:=](?!=)""", code) is not None


def leaves(node, prefix=()):
    for key, value in node.items():
        if isinstance(value, dict) and "_target_" not in value and key != "hydra":
            yield from leaves(value, (*prefix, key))
        else:
            yield (*prefix, key), value


def options(group: str):
    return sorted((CONF / group).glob("*.yaml")) if (CONF / group).is_dir() else [CONF / group]


def interpolated(path: str) -> bool:
    """Whether a config interpolates the key at `path` (its full dotted path), e.g. ${eval.sampler.height}."""
    return any(re.search(rf"\$\{{{re.escape(path)}[.}}]", f.read_text()) for f in CONF.rglob("*.yaml"))


def unread_keys(group: str, code: str) -> list[str]:
    unread = []
    for path in options(group):
        cfg = OmegaConf.to_container(OmegaConf.load(path))
        body = cfg.get(group, cfg) if group == "eval" else cfg  # eval options are @package _global_
        for keys, value in leaves(body):
            if keys[-1] in READ_BY_HYDRA or (isinstance(value, dict) and "_target_" in value):
                continue
            prefix = "" if group.endswith(".yaml") else f"{group}."
            missing = [k for i, k in enumerate(keys) if k not in READ_BY_HYDRA and not reads(code, k)
                       and not interpolated(prefix + ".".join(map(str, keys[:i + 1])))]
            if missing:
                unread.append(f"{path.relative_to(CONF)}: {'.'.join(map(str, keys))} ({', '.join(missing)} unread)")
    return unread


@pytest.mark.parametrize("group", sorted(CONSUMERS))
def test_every_key_of_a_group_is_read_by_its_code(group):
    unread = unread_keys(group, code_of(CONSUMERS[group]))
    assert not unread, "keys nothing reads:\n" + "\n".join(unread)


def test_a_key_only_named_in_prose_counts_as_unread(tmp_path, monkeypatch):
    """The premise: a nested key whose parent no code reads fails, however common its own name."""
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "m.yaml").write_text("name: m\nsampler: {height: 1}\n")
    monkeypatch.setattr(sys.modules[__name__], "CONF", tmp_path)
    code = 'def f(cfg):\n    """reads the sampler"""  # sampler\n    return cfg.name, cfg.height\n'
    assert unread_keys("model", code) == ["model/m.yaml: sampler.height (sampler unread)"]
    assert unread_keys("model", code + "s = cfg.get('sampler')\n") == []


def test_every_metric_key_is_an_argument_of_its_class():
    unread = []
    for path in sorted((CONF / "metrics").rglob("*.yaml")):
        cfg = OmegaConf.to_container(OmegaConf.load(path))
        params = inspect.signature(get_class(cfg["_target_"]).__init__).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
        for key, value in cfg.items():
            if key == "_target_":
                continue
            if key not in params and not takes_any:
                unread.append(f"{path.relative_to(CONF)}: {key}")
            if isinstance(value, dict) and "_target_" in value:
                get_class(value["_target_"])  # a nested plug-in must at least import
    assert not unread, "keys the class does not take:\n" + "\n".join(unread)


def test_geneval_rule_keys_reach_the_rules():
    """GenEval takes each RuleConfig threshold as a named argument (no **rules, so a typo is an
    unknown key): every one is in the config, and its value reaches the rules."""
    from dataclasses import asdict, fields

    from skrr.eval.geneval.evaluate import GenEval
    from skrr.eval.geneval.rules import RuleConfig

    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "metrics" / "geneval" / "mask2former.yaml"))
    rules = {f.name: cfg[f.name] for f in fields(RuleConfig)}
    changed = {k: v * 2 for k, v in rules.items()}  # not the defaults, so a dropped argument shows
    assert asdict(GenEval(detector=lambda image: [], color_classifier=None, **changed).rules) == changed


def test_a_sentinel_metric_key_changes_the_built_metric(tmp_path):
    """metrics.<name>.<key> on the command line reaches the metric (not a copy of the config)."""
    from hydra import compose, initialize_config_dir

    from skrr.eval.metrics import build_metric
    from skrr.experiments.cli.app import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        cfg = compose(config_name="run", overrides=["metrics.clip.batch_size=7", "metrics.efficiency.height=24"])
    assert build_metric(cfg.metrics.clip).batch_size == 7
    assert build_metric(cfg.metrics.efficiency, pipeline=None).settings["height"] == 24
