"""Range checks for numeric settings, run before anything loads. A bad value stops the app in one
line that names the key and the allowed range: `method.batch_size must be a whole number >= 1, got -1`.
NaN and inf are out of every range; so are booleans and strings where a number is asked for."""
from __future__ import annotations

import math
from dataclasses import dataclass

from skrr.errors import ConfigError


@dataclass(frozen=True)
class Range:
    lo: float | None = None
    hi: float | None = None
    whole: bool = False  # an integer
    lo_open: bool = False  # lo itself is out of range
    none: bool = False  # null is allowed (it means a default)
    multiple: int = 1  # the value must be a multiple of this (image sizes)
    why: str = ""  # said after the multiple (what demands it)

    def describe(self) -> str:
        kind = "a whole number" if self.whole else "a number"
        if self.lo is not None and self.hi is not None:
            kind += f" in {'(' if self.lo_open else '['}{_num(self.lo)}, {_num(self.hi)}]"
        elif self.lo is not None:
            kind += f" {'>' if self.lo_open else '>='} {_num(self.lo)}"
        elif self.hi is not None:
            kind += f" <= {_num(self.hi)}"
        if self.multiple > 1:
            kind += f" that is a multiple of {self.multiple}{f' ({self.why})' if self.why else ''}"
        return f"null or {kind}" if self.none else kind

    def ok(self, value) -> bool:
        if value is None:
            return self.none
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.whole and value != int(value):
            return False
        if self.lo is not None and (value <= self.lo if self.lo_open else value < self.lo):
            return False
        if self.hi is not None and value > self.hi:
            return False
        return not (self.multiple > 1 and int(value) % self.multiple)

    def check(self, value, key: str):
        """`value` if it is in range, else ConfigError naming `key`."""
        if not self.ok(value):
            raise ConfigError(key, f"must be {self.describe()}, got {value!r}")
        return value


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


AT_LEAST_ONE = Range(1, whole=True)  # batch sizes, steps, sizes, counts
POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
FRACTION = Range(0, 1)
WHOLE = Range(whole=True)  # seeds and indices: any integer
OPTIONAL_COUNT = Range(1, whole=True, none=True)


def check_ranges(node, ranges: dict[str, Range], prefix: str) -> None:
    """Check each key of `ranges` that `node` (a dict or DictConfig) sets, named `<prefix>.<key>`."""
    for key, rng in ranges.items():
        if key in node:
            rng.check(node[key], f"{prefix}.{key}" if prefix else key)
