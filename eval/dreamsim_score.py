"""DreamSim score = 1 - DreamSim distance between the dense and the pruned image of the same prompt and seed.

Default: the `dreamsim` package's ensemble (DINO + CLIP + OpenCLIP ViT-B/16 with its LoRA weights).
tiny=True builds the same PerceptualModel class with tiny random ViTs (dreamsim's own VisionTransformer)
instead of downloading; or pass feature_extractor (uint8 (N,3,H,W) -> (N,D)): distance = 1 - cosine.
"""
from __future__ import annotations

import contextlib

import torch

from skrr.errors import InputError
from skrr.eval.images import to_pil_list, to_uint8_tensor
from skrr.eval.metrics import Metric


@contextlib.contextmanager
def _tiny_vits(dim: int = 16):
    """Make dreamsim's ViTExtractor.create_model build tiny random ViTs (12 blocks: DreamSim reads block 11)."""
    from dreamsim.feature_extraction import extractor
    from dreamsim.feature_extraction.vision_transformer import VisionTransformer

    original = extractor.ViTExtractor.create_model

    def create_model(model_type: str, load_dir: str = "./models"):
        vit = VisionTransformer(patch_size=16, embed_dim=dim, depth=12, num_heads=2, mlp_ratio=2, qkv_bias=True)
        if "clip" in model_type:  # CLIP-as-DINO: pre-norm in pos_drop and a projection matrix, as dreamsim loads it
            vit.pos_drop = torch.nn.LayerNorm(dim)
            return vit, torch.randn(dim, dim) / dim ** 0.5
        return vit

    extractor.ViTExtractor.create_model = staticmethod(create_model)
    try:
        yield
    finally:
        extractor.ViTExtractor.create_model = original


def load_dreamsim(device: str | torch.device = "cpu", dreamsim_type: str = "ensemble", cache_dir: str = "./models",
                  tiny: bool = False):
    """(model, preprocess) as dreamsim.dreamsim returns them."""
    from dreamsim import dreamsim
    from dreamsim.config import dreamsim_args
    from dreamsim.model import PerceptualModel

    if not tiny:
        return dreamsim(pretrained=True, device=str(device), cache_dir=cache_dir, dreamsim_type=dreamsim_type)
    torch.manual_seed(0)
    with _tiny_vits():
        model = PerceptualModel(**dreamsim_args["model_config"][dreamsim_type], device=str(device),
                                load_dir=cache_dir, normalize_embeds=True)
    model = model.to(device).eval().requires_grad_(False)
    from torchvision import transforms
    size = dreamsim_args["img_size"]
    t = transforms.Compose([transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BICUBIC),
                            transforms.ToTensor()])
    return model, lambda img: t(img.convert("RGB")).unsqueeze(0)


class DreamSimScore(Metric):
    """update(images, prompts, dense): each pruned image against the dense image of its prompt and seed.
    `item_scores`: 1 - distance per pair (float32); the value is their mean."""
    higher_is_better = True

    def __init__(self, device: str | torch.device = "cpu", dreamsim_type: str = "ensemble", cache_dir: str = "./models",
                 tiny: bool = False, feature_extractor: torch.nn.Module | None = None, batch_size: int = 32):
        super().__init__()
        self.batch_size = batch_size
        self.feature_extractor = feature_extractor.eval() if feature_extractor is not None else None
        if self.feature_extractor is None:
            self.model, self.preprocess = load_dreamsim(device, dreamsim_type, cache_dir, tiny)
        self.to(device)

    @torch.no_grad()
    def distance(self, dense_images, pruned_images) -> torch.Tensor:
        if self.feature_extractor is not None:
            a = self.feature_extractor(to_uint8_tensor(dense_images).to(self.device)).float()
            b = self.feature_extractor(to_uint8_tensor(pruned_images).to(self.device)).float()
            return (1 - torch.nn.functional.cosine_similarity(a, b, dim=-1)).cpu()
        a = torch.cat([self.preprocess(img) for img in to_pil_list(dense_images)]).to(self.device)
        b = torch.cat([self.preprocess(img) for img in to_pil_list(pruned_images)]).to(self.device)
        return self.model(a, b).reshape(-1).float().cpu()

    @classmethod
    def needs_dense(cls, cfg) -> bool:
        return True

    def update(self, images, prompts=None, dense=None) -> None:
        if dense is None or len(dense) != len(images):
            raise InputError(f"DreamSim pairs images by prompt index: got {0 if dense is None else len(dense)} dense "
                             f"and {len(images)} pruned images")
        self.item_scores.append(1 - self.distance(dense, images))

    def compute(self) -> float:
        scores = self.item_tensor().tolist()
        if not scores:
            raise InputError("DreamSim has no image pairs; call update(images, prompts, dense=dense_images) first")
        return float(sum(scores) / len(scores))  # Python's left-to-right double sum, as the value always was
