"""skrr: Skip and Re-use text-encoder sub-blocks for memory-efficient text-to-image generation."""
__version__ = "0.1.0"

from skrr.plan import Plan, PlanError  # noqa: E402
from skrr.encoder import to_sub_blocks  # noqa: E402
from skrr.surgery import apply_plan  # noqa: E402
from skrr.pruned_io import load_pruned, save_pruned  # noqa: E402
from skrr.pretrained import (SkrrCLIPTextModel, SkrrCLIPTextModelWithProjection, SkrrT5EncoderModel,  # noqa: E402
                             register as _register)

_register()  # AutoConfig / AutoModel know skrr_t5 and skrr_clip_text from here on

__all__ = ["Plan", "PlanError", "to_sub_blocks", "apply_plan", "load_pruned", "save_pruned", "SkrrT5EncoderModel",
           "SkrrCLIPTextModel", "SkrrCLIPTextModelWithProjection"]
