"""Every numeric key under conf/ is range-checked before anything loads: for each YAML file, each
int/float leaf (and each key documented as numeric but null or `auto` by default) is set to NaN, to
-1 and to 0 in the composed config, and `skrr.experiments.runner.checks.check_config` (the pure check both apps
run first) must refuse it in one line that names the key. A new numeric key without a check fails
here. Keys for which -1 or 0 is a legitimate value are listed with the reason."""
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from skrr.errors import ConfigError
from skrr.experiments.cli.app import CONF_DIR
from skrr.experiments.runner.checks import check_config

CONF = Path(CONF_DIR)
# read by Hydra's launcher plug-ins (joblib, submitit), which check them; skrr never sees them
HYDRA_OWNED = ("hydra/",)
# keys whose every integer is a legitimate value (NaN is still refused)
UNBOUNDED = {"seed": "a random seed: any integer", "base_seed": "a random seed: any integer",
             "coco_seed": "a random seed: any integer",
             "hidden_state": "a layer index: negative counts from the end (-1 is the last hidden state)",
             "hidden_states": "layer indices (0 the embeddings, negative from the end): checked against the "
                              "encoder's depth when its config is read"}
# keys for which -1 is in range: the out-of-range value tried instead
MINUS_ONE_OK = {"T": 1.5}  # LaCo's cosine-similarity threshold lies in [-1, 1]
# keys for which 0 is in range
ZERO_OK = {"sparsity": "0 is the dense model", "guidance_scale": "0 turns guidance off",
           "L": "LaCo's lowest layer may be the first (0)", "threshold": "a detection score threshold in [0, 1]",
           "counting_threshold": "a detection score threshold in [0, 1]", "max_overlap": "an IoU bound in [0, 1]",
           "position_threshold": "a relative distance >= 0", "num_samples": "0 logs no sample table",
           "T": "a cosine-similarity threshold in [-1, 1]", "futility": "0 never stops a comparison for futility",
           **{m: "an adaptive margin of 0: no stop as within margin" for m in ("geneval", "geneval2", "dreamsim", "clip",
                                                                              "fid")}}
# documented numeric, but null or `auto` in the shipped file: (file, key) -> the value it takes when set
NUMERIC_WHEN_SET = {("run.yaml", "threads"): 2, ("calibration/file.yaml", "calibration.min_tokens"): 150,
                    ("calibration/file.yaml", "calibration.max_tokens"): 250,
                    ("method/skrr.yaml", "method.depth"): 24,
                    ("eval/paper.yaml", "eval.sampler.height"): 512, ("eval/paper.yaml", "eval.sampler.width"): 512,
                    ("eval/paper.yaml", "eval.sampler.num_inference_steps"): 20,
                    ("eval/smoke.yaml", "eval.sampler.guidance_scale"): 4.5}


def yaml_files() -> list[Path]:
    return sorted(p for p in CONF.rglob("*.yaml")
                  if not any(p.relative_to(CONF).as_posix().startswith(h) for h in HYDRA_OWNED))


def selection(path: Path) -> tuple[str, list[str], str]:
    """(config name, overrides that select this file, the prefix its keys get in the composed config)."""
    rel = path.relative_to(CONF)
    if len(rel.parts) == 1:
        return (rel.stem if rel.stem in ("run", "prune") else "run"), [], ""
    group, option = "/".join(rel.parts[:-1]), rel.stem
    global_package = path.read_text().lstrip().startswith("# @package _global_")
    extra = ["logger=wandb"] if group == "logger" else []
    return "run", [f"{group}={option}", *extra], "" if global_package else group.replace("/", ".")


def numeric_leaves(node, prefix=""):
    for key, value in node.items():
        if key in ("defaults", "hydra", "_target_"):
            continue
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict):
            yield from numeric_leaves(value, name)
        elif isinstance(value, list) and value and all(_number(v) for v in value):
            yield name, value
        elif _number(value):
            yield name, value


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def cases():
    for path in yaml_files():
        rel = path.relative_to(CONF).as_posix()
        config, overrides, prefix = selection(path)
        keys = [(f"{prefix}.{k}" if prefix else k, v) for k, v in
                numeric_leaves(OmegaConf.to_container(OmegaConf.load(path)))]
        keys += [(k, v) for (f, k), v in NUMERIC_WHEN_SET.items() if f == rel]
        if keys:
            yield pytest.param(config, overrides, keys, id=rel)


def bad_values(key: str, value):
    last = key.rsplit(".", 1)[-1]
    tries = [float("nan")]
    if last not in UNBOUNDED:
        tries.append(MINUS_ONE_OK.get(last, -1))
        if last not in ZERO_OK:
            tries.append(0)
    return [[t] if isinstance(value, list) else t for t in tries]


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        yield


@pytest.mark.parametrize("config,overrides,keys", list(cases()))
def test_every_numeric_key_is_range_checked(hydra_conf, config, overrides, keys):
    base = compose(config_name=config, overrides=overrides)
    check_config(base)  # the shipped values pass
    unchecked = []
    for key, value in keys:
        assert OmegaConf.select(base, key, default="<missing>") != "<missing>", f"{key} is not in the composed config"
        cfg = base.copy()
        OmegaConf.update(cfg, key, value, force_add=True)
        check_config(cfg)  # a documented in-range value passes
        for bad in bad_values(key, value):
            cfg = base.copy()
            OmegaConf.update(cfg, key, bad, force_add=True)
            try:
                check_config(cfg)
            except ValueError as e:
                msg = str(e)
                assert "\n" not in msg and msg.startswith(f"{key} must"), (key, bad, msg)
            else:
                unchecked.append(f"{key}={bad}")
    assert not unchecked, "numeric keys accepted out of range (add a range check):\n" + "\n".join(unchecked)


def test_the_lists_name_only_keys_that_exist():
    """The exemptions and the null-by-default list cannot outlive the keys they describe."""
    leaves = {k.rsplit(".", 1)[-1] for p in yaml_files() for k, _ in
              numeric_leaves(OmegaConf.to_container(OmegaConf.load(p)))}
    assert set(UNBOUNDED) | set(MINUS_ONE_OK) | set(ZERO_OK) <= leaves
    for (rel, key), _ in NUMERIC_WHEN_SET.items():
        node = OmegaConf.load(CONF / rel)
        _, _, prefix = selection(CONF / rel)
        local = key[len(prefix) + 1:] if prefix else key
        assert OmegaConf.select(node, local, default="missing") in (None, "auto"), (rel, key)


def test_a_new_unchecked_numeric_key_fails(hydra_conf):
    """The table test's premise: a numeric key nothing checks is accepted out of range."""
    cfg = compose(config_name="run")
    OmegaConf.update(cfg, "eval.brand_new_count", -1, force_add=True)
    check_config(cfg)  # accepted: the table test would list it as unchecked


def test_a_method_refuses_a_key_it_does_not_take(hydra_conf):
    """A method's keys are its constructor's: a new or mistyped one fails at construction, named."""
    cfg = compose(config_name="run")
    OmegaConf.update(cfg, "method.brand_new_count", -1, force_add=True)
    with pytest.raises(ConfigError, match=r"^method.brand_new_count is not a setting of Skrr"):
        check_config(cfg)
