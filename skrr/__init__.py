"""skrr: Skip and Re-use text-encoder sub-blocks for memory-efficient text-to-image generation."""
__version__ = "0.1.0"

import logging as _logging
import sys as _sys

# Importing torchao (the quantize option's library; diffusers imports it whenever it is installed)
# prints torch's deprecation of its pytree registrations, and diffusers 0.42.1 warns that the
# torchao tensor classes it knew have moved. skrr loads no torchao-serialized checkpoint: both are
# noise on every command's stderr.
for _name in ("diffusers.quantizers.torchao.torchao_quantizer", "torch.utils._pytree"):
    _logging.getLogger(_name).setLevel(_logging.ERROR)

from skrr.plan import Plan, PlanError  # noqa: E402
from skrr.encoder import to_sub_blocks  # noqa: E402
from skrr.surgery import apply_plan  # noqa: E402
from skrr.pruned_io import load_pruned, save_pruned  # noqa: E402
import skrr.pretrained as _pretrained_module  # noqa: E402
from skrr.pretrained import (SkrrCLIPTextModel, SkrrCLIPTextModelWithProjection, SkrrT5EncoderModel,  # noqa: E402
                             register as _register)

_register()  # AutoConfig / AutoModel know the Skrr classes (skrr_t5, skrr_clip_text, ...) from here on
# A pruned pipeline folder names its encoder ["modeling_skrr", "Skrr..."] (the modelling file in the
# component's folder, for trust_remote_code=True); with skrr imported that name is skrr's own classes,
# so diffusers accepts the component passed in: `from_pretrained(dir, text_encoder=skrr.load_pruned(...))`.
_sys.modules.setdefault("modeling_skrr", _pretrained_module)

__all__ = ["Plan", "PlanError", "to_sub_blocks", "apply_plan", "load_pruned", "save_pruned", "SkrrT5EncoderModel",
           "SkrrCLIPTextModel", "SkrrCLIPTextModelWithProjection"]
