"""What every skrr Hydra app shares: where the configs are, one-line errors for bad input, and a
one-line account of an interrupt (Ctrl-C, SIGTERM) instead of a traceback. Only the project's own
input errors (skrr.errors.InputError) are shortened: any other exception is a bug and keeps its traceback."""
from __future__ import annotations

import contextlib
import importlib.util
import signal
import sys
import threading
from pathlib import Path

from hydra.errors import InstantiationException
from omegaconf.errors import MissingMandatoryValue

# skrr/conf (skrr.models.CONF_DIR), found without importing skrr (and torch) before the arguments are checked
CONF_DIR = str((Path(importlib.util.find_spec("skrr").submodule_search_locations[0]) / "conf").resolve())


class Interrupted(KeyboardInterrupt):
    """A stop signal (SIGTERM, e.g. from a scheduler) raised like Ctrl-C's KeyboardInterrupt, so the
    same cleanups (temporary files, locks) run. `stage` is set by the stage it stopped in."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


RESUMES = "finished work is kept: run the same command again to resume"


@contextlib.contextmanager
def fail_fast(on_interrupt: str = RESUMES):
    """Bad input ends the app with `error: ...` and exit status 2; an interrupt with where it stopped
    and `on_interrupt` (what a re-run does), exit status 128 + signal number. Neither prints a traceback."""
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set handlers
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if main_thread else None
    try:
        yield
    except MissingMandatoryValue as e:  # a `???` in a config group left unset
        print(f"error: {e.full_key} must be set, e.g. {e.full_key}=...", file=sys.stderr)
        sys.exit(2)
    except Exception as e:
        from skrr.errors import InputError  # here, not above: the app has imported skrr by now

        cause = e.__cause__ if isinstance(e, InstantiationException) else e  # instantiate wraps a constructor's error
        if not isinstance(cause, InputError):
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        stage = getattr(e, "stage", None)
        where = f" in stage {stage}" if stage else ""
        print(f"interrupted ({signal.Signals(signum).name}){where}; {on_interrupt}", file=sys.stderr)
        sys.exit(128 + signum)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
