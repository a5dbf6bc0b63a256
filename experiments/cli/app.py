"""What every skrr Hydra app shares: where the configs are, one-line errors for bad input (Hydra's own
refusals of the command line included, `check_command_line`), and a one-line account of an interrupt
(Ctrl-C, SIGTERM) instead of a traceback. Only the project's own input errors (skrr.errors.InputError)
are shortened: any other exception is a bug and keeps its traceback. Nothing here imports torch."""
from __future__ import annotations

import contextlib
import difflib
import importlib.util
import signal
import sys
import threading
from pathlib import Path

from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException
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


# another config, or no run at all (help, info, shell completion): Hydra answers on its own
HYDRA_ONLY = ("--config-name", "-cn", "--config-path", "-cp", "--config-dir", "-cd", "--info", "-i", "--help", "-h",
              "--hydra-help", "--shell-completion", "-sc")


def check_command_line(config_name: str, argv: list[str]) -> None:
    """Refuse, in one line with exit status 2, what Hydra would refuse in several with status 1: a
    `group=option` naming no conf/<group>/<option>.yaml, and a key the composed config lacks
    (`method.beam_widht=3`). Each swept value (`-m method=a,b`) is composed once."""
    overrides = [arg for arg in argv if not arg.startswith("-") and "=" in arg]
    if not overrides or any(arg.split("=")[0] in HYDRA_ONLY for arg in argv):
        return  # the shipped config composes; Hydra answers the rest on its own
    values = {arg: sweep_values(arg) for arg in overrides}
    for arg, options in values.items():
        key, _, _ = arg.lstrip("+~").partition("=")
        group = Path(CONF_DIR) / key
        if group.is_dir() and "." not in key:
            known = sorted(p.stem for p in group.glob("*.yaml"))
            unknown = [v for v in options if v not in known and v != "null"]
            if unknown:
                refuse(f"unknown {key} {unknown[0]!r}; choose from {', '.join(known)}")
    first = [arg.partition("=")[0] + "=" + opts[0] if len(opts) > 1 else arg for arg, opts in values.items()]
    variants = [first] + [[*first[:i], arg.partition("=")[0] + "=" + v, *first[i + 1:]]
                          for i, (arg, opts) in enumerate(values.items()) for v in opts[1:]]
    from hydra import compose, initialize_config_dir

    for variant in variants:
        try:
            with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
                compose(config_name, overrides=variant)
        except MissingConfigException as e:  # e.g. an option of a group inside a group
            refuse(str(e).splitlines()[0])
        except ConfigCompositionException as e:
            key = getattr(e.__cause__, "full_key", None)
            if not key:
                return  # not a key of ours: Hydra reports it in full
            refuse(f"{key} is not a key of the config{did_you_mean(config_name, variant, key)}; "
                   f"a new key is added with a +: +{key}=...")


def composed(config_name: str, argv: list[str]):
    """The config of the command line's first sweep point (each swept value's first), checked by
    `check_command_line` already: what a driver reads before it launches the sweep."""
    from hydra import compose, initialize_config_dir

    overrides = [arg for arg in argv if not arg.startswith("-") and "=" in arg]
    first = [arg.partition("=")[0] + "=" + sweep_values(arg)[0] for arg in overrides]
    with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
        return compose(config_name, overrides=first)


def sweep_values(arg: str) -> list[str]:
    """The values of one override: a comma sweep's (outside brackets and quotes), else the one value;
    Hydra's sweep functions (choice, range, glob) are left to Hydra (no value checked)."""
    value = arg.partition("=")[2]
    if "(" in value:
        return [value]
    out, depth, quote, start = [], 0, None, 0
    for i, c in enumerate(value):
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "[{":
            depth += 1
        elif c in "]}":
            depth -= 1
        elif c == "," and depth == 0:
            out.append(value[start:i])
            start = i + 1
    return out + [value[start:]] if out else [value]


def did_you_mean(config_name: str, variant: list[str], key: str) -> str:
    """` (did you mean X?)` from the keys beside the mistyped one, composed without it."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    parent, _, name = key.rpartition(".")
    rest = [arg for arg in variant if arg.lstrip("+~").partition("=")[0] != key]
    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
            node = OmegaConf.select(compose(config_name, overrides=rest), parent) if parent else None
    except Exception:  # noqa: BLE001 - only a hint: without it the line still names the key
        return ""
    close = difflib.get_close_matches(name, list(node or []), n=1)
    return f" (did you mean {parent}.{close[0]}?)" if close else ""


def refuse(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
