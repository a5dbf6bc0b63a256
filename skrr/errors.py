"""The project's own input errors: what skrr's commands print as one line (`error: ...`, exit 2).

Anything else keeps its traceback: a TypeError or KeyError from the code is a bug to report, not
bad input. Each class also derives from the builtin a caller would catch (ValueError, KeyError,
FileNotFoundError, TypeError), so `except ValueError` and friends keep working.
"""
from __future__ import annotations


class InputError(ValueError):
    """Bad input: a config value, a file's content, a name. The message says what to change."""


class ConfigError(InputError):
    """A config key that is unknown, missing or out of range: `<key> <problem>`. A constructor names
    its own key (`beam_width`); skrr.config.build names it in full (`method.beam_width`) with `within`."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key} {problem}" if key else problem)
        self.key, self.problem = key, problem

    def within(self, prefix: str) -> ConfigError:
        return ConfigError(f"{prefix}.{self.key}" if self.key else prefix, self.problem)


class MissingFile(InputError, FileNotFoundError):
    """A file or folder the input names does not exist."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownName(InputError, KeyError):
    """An unknown model, preset or row name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Unsupported(InputError, TypeError):
    """An object of a kind skrr cannot handle (an encoder class without a pruned twin)."""
