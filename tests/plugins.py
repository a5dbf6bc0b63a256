"""Plug-in classes that live outside skrr, as a user's would: named by `_target_` on the command line."""
from dataclasses import dataclass

from skrr.methods import Method


@dataclass(kw_only=True)
class SkipFirstBlock(Method):
    """Skips block 0 (attention and FFN) for every target: a method the core has never heard of."""

    def run(self, ctx, targets):
        return [ctx.plan([0, 1], self, target=t) for t in targets]


@dataclass(kw_only=True)
class Broken(Method):
    """A method with a bug in it."""

    def run(self, ctx, targets):
        raise TypeError("a bug in a method, not bad input")
