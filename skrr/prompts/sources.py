"""Where calibration prompts come from: one class per source, built from `conf/calibration/<name>.yaml`
(`_target_`), whose constructor checks every number. `check()` does the cheap file checks before a
model loads; `select(token_length)` reads the pool, filters it by tokenized length (the paper kept
long captions of 150-250 tokens) and draws `size` prompts with `seed`.

    source = as_source({"source": "builtin", "size": 16})   # builtin.yaml's defaults under these
    prompts = source.select(token_length=lambda p: len(tokenizer(p).input_ids))

`source` is the name a plan records: builtin, file, hf, coco, or a plug-in's dotted callable.
"""
from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf

from skrr.config.build import build
from skrr.config.files import CONF_DIR, group_option
from skrr.config.legacy import current_name
from skrr.config.ranges import AT_LEAST_ONE, OPTIONAL_COUNT, WHOLE, Range, check_ranges
from skrr.errors import ConfigError, InputError, MissingFile
from skrr.models.tiny import _corpus as corpus
from skrr.prompts.files import check_nonempty, load_prompt_file
from skrr.prompts.real import check_coco, coco_captions


def too_few(have: int, size: int, source: str) -> str:
    return (f"calibration.size={size} but {source} holds only {have} prompt{'s' * (have != 1)}; "
            f"set calibration.size={have} or give more prompts")


@dataclass(kw_only=True)
class PromptSource:
    source: str  # what the plan records as the source
    size: int  # prompts drawn
    seed: int
    min_tokens: int | None  # length filter by the model's own tokenizer (special tokens counted)
    max_tokens: int | None

    RANGES: ClassVar[dict[str, Range]] = {"size": AT_LEAST_ONE, "seed": WHOLE, "min_tokens": OPTIONAL_COUNT,
                                          "max_tokens": OPTIONAL_COUNT}

    def __post_init__(self):
        check_ranges(vars(self), self.RANGES, "")
        lo, hi = self.min_tokens, self.max_tokens
        if lo is not None and hi is not None and lo > hi:
            raise InputError(f"calibration.min_tokens must be <= calibration.max_tokens, got {lo} > {hi}")

    def check(self) -> None:
        """Cheap checks (files exist and hold enough prompts) before any model loads."""

    def prompts(self) -> list[str]:
        """The unfiltered pool."""
        raise NotImplementedError

    def select(self, token_length=None) -> list[str]:
        """Filter the pool by tokenized length (if bounds are set), then sample `size` with `seed`."""
        prompts, lo, hi = self.prompts(), self.min_tokens, self.max_tokens
        if (lo is not None or hi is not None) and token_length is not None:
            prompts = [p for p in prompts if (lo is None or token_length(p) >= lo) and (hi is None or token_length(p) <= hi)]
        if not prompts:
            raise InputError("no calibration prompts left after filtering; widen calibration.min_tokens/max_tokens")
        if len(prompts) < self.size:  # never a silently smaller calibration set
            filtered = " within calibration.min_tokens/max_tokens" if lo is not None or hi is not None else ""
            raise InputError(too_few(len(prompts), self.size, f"calibration.source={self.source}{filtered}"))
        return random.Random(self.seed).sample(prompts, self.size)


@dataclass(kw_only=True)
class Builtin(PromptSource):
    """Random captions over a small vocabulary, offline: for tiny and toy models and tests only."""
    pool: int

    RANGES: ClassVar[dict[str, Range]] = {**PromptSource.RANGES, "pool": AT_LEAST_ONE}

    def __post_init__(self):
        super().__post_init__()
        if self.size > self.pool:
            raise InputError(f"calibration.size={self.size} is more than calibration.pool={self.pool} prompts; "
                             "lower calibration.size or raise calibration.pool")

    def prompts(self) -> list[str]:
        return corpus(self.pool, self.seed)


@dataclass(kw_only=True)
class PromptFile(PromptSource):
    """A text file (one prompt per line) or JSONL (`column` field per line)."""
    path: str
    column: str

    def check(self) -> None:
        path = Path(self.path)
        if not path.exists():
            raise MissingFile(f"calibration file {path} not found (calibration.path)")
        with open(path, errors="replace") as f:  # counted line by line: never holds a big file whole
            lines = sum(1 for line in f if line.strip())
        if not lines:
            raise InputError(f"calibration file {path} holds no prompts (it is empty or blank)")
        if lines < self.size:
            raise InputError(too_few(lines, self.size, f"calibration file {path}"))

    def prompts(self) -> list[str]:
        return load_prompt_file(self.path, self.column)


@dataclass(kw_only=True)
class HFDataset(PromptSource):
    """A Hugging Face dataset column (needs `pip install datasets` and hub access or a local cache)."""
    dataset: str
    split: str
    column: str

    def prompts(self) -> list[str]:
        try:
            import datasets
        except ImportError:
            raise ImportError("calibration=hf needs the `datasets` package: pip install datasets") from None
        return [str(x) for x in datasets.load_dataset(self.dataset, split=self.split)[self.column]]


@dataclass(kw_only=True)
class Coco(PromptSource):
    """MS-COCO 2014 train captions (skrr.prompts.real): `pool` of them drawn first (null: all)."""
    path: str
    exclude: str | None
    pool: int | None

    RANGES: ClassVar[dict[str, Range]] = {**PromptSource.RANGES, "pool": OPTIONAL_COUNT}

    def check(self) -> None:
        check_coco(self.path, self.exclude)

    def prompts(self) -> list[str]:
        return coco_captions(self.path, exclude=self.exclude, pool=self.pool, seed=self.seed)


@dataclass(kw_only=True)
class Plugin(PromptSource):
    """A plug-in: `source` is the dotted name of a callable (n, seed) -> prompts, called with (pool, seed)."""
    pool: int

    RANGES: ClassVar[dict[str, Range]] = {**PromptSource.RANGES, "pool": AT_LEAST_ONE}

    def __post_init__(self):
        super().__post_init__()
        if "." not in self.source:
            raise ConfigError("source", f"must be a dotted callable (n, seed) -> prompts, got {self.source!r}")

    def prompts(self) -> list[str]:
        return check_nonempty(list(get_object(current_name(self.source))(self.pool, self.seed)), self.source)


# what a missing (`???`) key needs, said before anything is built
NEEDS = {"coco": "calibration=coco needs calibration.path=<annotations/captions_train2014.json> (MS-COCO 2014 train captions)"}


def as_source(cfg, missing_ok: bool = False) -> PromptSource:
    """The prompt source a calibration config describes: built from its `_target_`, or, for a config
    with only a `source` name and some settings (a Python caller's dict), from that name's YAML
    (conf/calibration/<source>.yaml) under those settings, or a plug-in for a dotted name.
    `missing_ok`: a `???` value (a path not given yet) is built as null, to check the numbers only."""
    if isinstance(cfg, PromptSource):
        return cfg
    if not isinstance(cfg, (Mapping, DictConfig)):
        raise ConfigError("calibration", f"must be a calibration config, got {type(cfg).__name__}")
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    if not cfg.get("_target_"):
        name = str(cfg.get("source"))
        if (CONF_DIR / "calibration" / f"{name}.yaml").is_file():
            cfg = OmegaConf.merge(group_option("calibration", name), cfg)
        elif "." in name:
            cfg = OmegaConf.merge({"_target_": f"{Plugin.__module__}.Plugin", "min_tokens": None, "max_tokens": None}, cfg)
        else:
            raise ConfigError("calibration.source", f"is {name!r}: use calibration=builtin, file, hf, coco, or a "
                                                    "dotted callable (n, seed) -> prompts")
    missing = sorted(k.rpartition(".")[2] for k in OmegaConf.missing_keys(cfg))
    if missing and not missing_ok:
        raise InputError(NEEDS.get(str(cfg.get("source")), f"calibration.{missing[0]} must be set, "
                                                           f"e.g. calibration.{missing[0]}=..."))
    if missing:
        cfg = OmegaConf.merge(cfg, {k: None for k in missing})
    return build(cfg, "calibration", PromptSource)
