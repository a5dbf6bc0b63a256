"""CLIP score with open_clip: mean raw cosine between image and prompt embeddings.

Default ViT-B-32-quickgelu with OpenAI weights (trained with QuickGELU); ~0.31 for dense PixArt-Sigma.
Raw cosine, not x100 as torchmetrics' CLIPScore reports it.
"""
from __future__ import annotations

import torch

from skrr.errors import InputError
from skrr.eval.images import to_pil_list
from skrr.eval.metrics import Metric


def load_open_clip(model_name: str = "ViT-B-32-quickgelu", pretrained: str | None = "openai",
                   device: str | torch.device = "cpu", tiny: bool = False):
    """(model, preprocess, tokenizer); tiny=True builds a random tiny config instead (offline)."""
    import open_clip

    if tiny:
        from skrr.eval.tiny import register_tiny_open_clip
        model_name, pretrained = register_tiny_open_clip(), None
    with torch.random.fork_rng():  # a tiny random backbone must be the same one in every process
        torch.manual_seed(0)
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device)
    return model.eval(), preprocess, open_clip.get_tokenizer(model_name)


class CLIPScore(Metric):
    """Mean over images of the cosine of each image with its prompt; `item_scores`: the cosines (float32)."""
    higher_is_better = True

    def __init__(self, model_name: str = "ViT-B-32-quickgelu", pretrained: str | None = "openai",
                 device: str | torch.device = "cpu", tiny: bool = False, model=None, batch_size: int = 64):
        super().__init__()
        self.batch_size = batch_size
        self.model, self.preprocess, self.tokenizer = model or load_open_clip(model_name, pretrained, device, tiny)
        self.to(device)

    @torch.no_grad()
    def score(self, images, prompts: list[str]) -> torch.Tensor:
        pils = to_pil_list(images)
        if len(pils) != len(prompts):
            raise InputError(f"CLIP score got {len(pils)} images but {len(prompts)} prompts; pass one prompt per image")
        pixels = torch.stack([self.preprocess(img) for img in pils]).to(self.device)
        image_emb = torch.nn.functional.normalize(self.model.encode_image(pixels).float(), dim=-1)
        text_emb = torch.nn.functional.normalize(self.model.encode_text(self.tokenizer(prompts).to(self.device)).float(), dim=-1)
        return (image_emb * text_emb).sum(-1).cpu()

    def update(self, images, prompts: list[str], dense=None) -> None:
        self.item_scores.append(self.score(images, prompts))

    def compute(self) -> float:
        scores = self.item_tensor().tolist()
        if not scores:
            raise InputError("CLIP score has no images; call update(images, prompts) first")
        return float(sum(scores) / len(scores))  # Python's left-to-right double sum, as the value always was
