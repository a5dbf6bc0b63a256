"""Building a pluggable part (a method, a calibration source, a model adapter, a metric) from its
config: `_target_` names the class, the other keys are its constructor's arguments.

    method = build(cfg.method, "method")          # -> skrr.methods.Skrr(beam_width=3, ...)

The keys are checked against the constructor before it is called, so a mistyped key fails here
with its full name (`unknown key method.beam_widht; did you mean beam_width?`), and a range error
the constructor raises (skrr.errors.ConfigError) is named in full too. Other exceptions from the
constructor are bugs and propagate with their traceback.
"""
from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Mapping

from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from skrr.config.legacy import current_name
from skrr.errors import ConfigError, InputError

TARGET = "_target_"


def target_class(cfg, key: str, base: type | None = None) -> type:
    """The class `cfg._target_` names (imported, not built), checked to be a `base`."""
    target = cfg.get(TARGET) if isinstance(cfg, Mapping | DictConfig) else None
    if not target:
        raise ConfigError(f"{key}.{TARGET}", "must name the class to build (e.g. skrr.methods.Skrr)")
    try:
        cls = get_class(current_name(str(target)))
    except ImportError as e:
        raise ConfigError(f"{key}.{TARGET}", f"names {target!r}, which cannot be imported ({type(e).__name__})") from None
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}.{TARGET}", f"names {target!r}, which is not a {base.__module__}.{base.__name__}")
    return cls


def check_keys(cls: type, keys, key: str, given=()) -> None:
    """Every key is a constructor argument of `cls` and every required argument is set (by `keys`
    or by the caller's `given`)."""
    params = inspect.signature(cls).parameters
    named = {n: p for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        for k in keys:
            if k != TARGET and k not in named:
                close = difflib.get_close_matches(str(k), list(named), n=1)
                hint = f"did you mean {close[0]}? " if close else ""
                raise ConfigError(f"{key}.{k}", f"is not a setting of {cls.__name__}; {hint}"
                                                f"it takes {', '.join(named)}")
    for name, p in named.items():
        if p.default is p.empty and name not in keys and name not in given:
            raise ConfigError(f"{key}.{name}", f"must be set ({cls.__name__} has no default for it)")


def build(cfg, key: str, base: type | None = None, **given):
    """The object `cfg` describes; `given` are runtime arguments that are not config (a pipeline)."""
    cfg = with_current_targets(cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg)))
    cls = target_class(cfg, key, base)
    check_keys(cls, list(cfg.keys()), key, given)
    try:
        return instantiate(cfg, _convert_="all", **given)
    except InstantiationException as e:
        if isinstance(e.__cause__, ConfigError):  # the constructor's own check: name the key in full
            raise e.__cause__.within(key) from None
        if isinstance(e.__cause__, InputError):
            raise e.__cause__ from None
        raise
    except ConfigError as e:
        raise e.within(key) from None


def with_current_targets(cfg):
    """`cfg` (a DictConfig or plain containers) with every `_target_`, nested ones too, under today's
    module names (skrr.config.legacy): a config written before the re-layout builds the same objects.
    A DictConfig is changed on a copy that keeps its parent, so its interpolations still resolve."""
    if isinstance(cfg, DictConfig | ListConfig):
        if not _old_targets(cfg):
            return cfg
        cfg = copy.deepcopy(cfg)
        for node in _old_targets(cfg):
            node[TARGET] = current_name(node[TARGET])
        return cfg
    if isinstance(cfg, Mapping):
        return {k: current_name(v) if k == TARGET and isinstance(v, str) else with_current_targets(v) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [with_current_targets(v) for v in cfg]
    return cfg


def _old_targets(node) -> list:
    """The config nodes under `node` whose `_target_` has an older name than today's."""
    found = []
    if isinstance(node, DictConfig):
        target = node._get_node(TARGET) if TARGET in node else None
        if target is not None and not OmegaConf.is_interpolation(node, TARGET) and isinstance(node[TARGET], str) \
                and current_name(node[TARGET]) != node[TARGET]:
            found.append(node)
        children = [node._get_node(k) for k in node if k != TARGET]
    elif isinstance(node, ListConfig):
        children = [node._get_node(i) for i in range(len(node))]
    else:
        return found
    for child in children:
        if isinstance(child, DictConfig | ListConfig):
            found += _old_targets(child)
    return found


def settings(obj, skip=("_target_",)) -> dict:
    """The constructor arguments an object was built with, as plain data (what plans and rows record)."""
    from dataclasses import fields

    return {f.name: getattr(obj, f.name) for f in fields(obj) if f.name not in skip and f.init}
