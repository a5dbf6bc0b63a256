"""NaN and inf are errors, never results: one check that stops the work in one line naming the stage
and the setting most likely behind it. `NotFinite` is a ValueError, so the apps print it as
`error: ...` (exit status 2) and no stage writes its artifact."""
from __future__ import annotations

import math

import torch

from skrr.errors import InputError


class NotFinite(InputError):
    """A stage produced NaN or inf."""


def check_finite(values, stage: str, likely: str):
    """`values` (a tensor, a number, or nested dicts/lists of them) unchanged if every number in it is
    finite; else NotFinite: `<stage> is not finite (<how many> of <n> values are nan/inf); likely cause: <likely>`."""
    bad, total = _count(values)
    if bad:
        raise NotFinite(f"{stage} is not finite ({bad} of {total} values are nan or inf); likely cause: {likely}")
    return values


def _count(values) -> tuple[int, int]:
    """(non-finite numbers, all numbers) in `values`."""
    if isinstance(values, torch.Tensor):
        if not (values.is_floating_point() or values.is_complex()):
            return 0, values.numel()
        return int((~torch.isfinite(values)).sum()), values.numel()
    if isinstance(values, bool) or values is None or isinstance(values, str):
        return 0, 0
    if isinstance(values, (int, float)):
        return int(not math.isfinite(values)), 1
    if isinstance(values, dict):
        values = list(values.values())
    if isinstance(values, (list, tuple)):
        counts = [_count(v) for v in values]
        return sum(b for b, _ in counts), sum(t for _, t in counts)
    if hasattr(values, "dtype") and hasattr(values, "tolist"):  # numpy arrays and scalars
        return _count(torch.as_tensor(values.tolist(), dtype=torch.float64))
    return 0, 0
