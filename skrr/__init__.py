"""skrr: Skip and Re-use text-encoder sub-blocks for memory-efficient text-to-image generation.

The public API, loaded on first use (as diffusers' `_LazyModule` does) so that `import skrr`, and the
console scripts' check of their arguments, cost no torch or transformers import:

    skrr.Plan / skrr.apply_plan          a plan, and applying it to an encoder
    skrr.save_pruned / skrr.load_pruned  kept weights to and from a folder    (skrr.hub)

Using any of them registers the Skrr classes with transformers' AutoConfig / AutoModel, so a pruned
folder then loads with `AutoModel.from_pretrained(folder)` without `trust_remote_code`.
"""
import logging
from importlib import import_module

# Importing torchao (the quantize option's library; diffusers imports it whenever it is installed)
# prints torch's deprecation of its pytree registrations, and diffusers 0.42.1 warns that the
# torchao tensor classes it knew have moved. skrr loads no torchao-serialized checkpoint: both are
# noise on every command's stderr.
for _name in ("diffusers.quantizers.torchao.torchao_quantizer", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)

# public name -> the module that defines it
_API = {
    "Plan": "skrr.plan", "PlanError": "skrr.plan",
    "to_sub_blocks": "skrr.encoders.view",
    "apply_plan": "skrr.encoders.surgery",
    "load_pruned": "skrr.hub.pruned_io", "save_pruned": "skrr.hub.pruned_io",
    "SkrrT5EncoderModel": "skrr.hub.pretrained", "SkrrCLIPTextModel": "skrr.hub.pretrained",
    "SkrrCLIPTextModelWithProjection": "skrr.hub.pretrained",
}
__all__ = sorted(_API)


def __getattr__(name: str):
    if name == "__version__":  # one version, pyproject.toml's; importlib.metadata costs 0.2 s, so read on first use
        from importlib.metadata import version

        globals()[name] = version("skrr")
        return globals()[name]
    if name not in _API:
        raise AttributeError(f"module 'skrr' has no attribute {name!r}")
    value = getattr(import_module(_API[name]), name)
    globals()[name] = value  # looked up once
    return value


def __dir__():
    return sorted(set(globals()) | set(_API))
