"""A prompt source over a given list: the calibration selection (length filter, seeded draw) on its own."""
from dataclasses import dataclass

from omegaconf import OmegaConf

from skrr.prompts.sources import PromptSource


@dataclass(kw_only=True)
class Listed(PromptSource):
    items: list

    def prompts(self) -> list[str]:
        return list(self.items)


def select_prompts(pool, cfg, token_length=None):
    """`size` prompts of `pool` drawn as a calibration source with settings `cfg` would draw them."""
    settings = {**OmegaConf.to_container(OmegaConf.create(cfg)), "source": "listed"}
    return Listed(items=pool, **settings).select(token_length)
