"""What every skrr Hydra app shares: where the configs are, and one-line errors for bad input."""
from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path

# skrr/conf (skrr.models.CONF_DIR), found without importing skrr (and torch) before the arguments are checked
CONF_DIR = str((Path(importlib.util.find_spec("skrr").submodule_search_locations[0]) / "conf").resolve())
BAD_INPUT = (ValueError, KeyError, FileNotFoundError, TypeError)


@contextlib.contextmanager
def fail_fast():
    """Bad input ends the app with `error: ...` and exit status 2, not a traceback."""
    try:
        yield
    except BAD_INPUT as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"error: {msg}", file=sys.stderr)
        sys.exit(2)
