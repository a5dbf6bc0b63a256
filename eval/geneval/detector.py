"""GenEval's detector without mmdet: transformers Mask2Former + mmdet-style post-processing, CLIP colours.

Post-processing follows mmdet's MaskFormerFusionHead.instance_postprocess: class probabilities
(softmax without the no-object class), the top-100 (query, class) pairs, masks upsampled bilinearly
to the padded input, cropped to the resized image and upsampled to the original size, score =
class probability x mean sigmoid over the binary mask, box = tight box of the mask (mask2bbox).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from skrr.errors import InputError
from skrr.eval.geneval.prompts import CLASSNAMES
from skrr.eval.geneval.rules import COLORS, Detection

MASK2FORMER = "facebook/mask2former-swin-small-coco-instance"


def build_tiny_mask2former(num_labels: int = 80, seed: int = 0):
    """Random tiny Mask2Former (tiny Swin backbone) and an image processor; runs on CPU in milliseconds."""
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    torch.manual_seed(seed)
    swin = SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                      window_size=4, out_features=["stage1", "stage2", "stage3", "stage4"])
    cfg = Mask2FormerConfig(backbone_config=swin, num_labels=num_labels, hidden_dim=32, num_queries=10,
                            encoder_layers=1, decoder_layers=2, encoder_feedforward_dim=64, dim_feedforward=64,
                            num_attention_heads=2, mask_feature_size=32, feature_size=32)
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}, size_divisor=32)
    return Mask2FormerForUniversalSegmentation(cfg).eval(), processor


def mask_to_box(mask: torch.Tensor) -> tuple[float, float, float, float]:
    """mmdet's mask2bbox: [x_min, y_min, x_max + 1, y_max + 1]; zeros for an empty mask."""
    ys, xs = torch.where(mask)
    if len(xs) == 0:
        return (0.0, 0.0, 0.0, 0.0)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


def instance_postprocess(class_logits: torch.Tensor, mask_logits: torch.Tensor, classnames: list[str],
                         max_per_image: int = 100) -> list[Detection]:
    """class_logits (Q, C+1), mask_logits (Q, H, W) at image size -> detections (mmdet's rule)."""
    num_queries, num_classes = class_logits.shape[0], class_logits.shape[1] - 1
    scores = F.softmax(class_logits.float(), dim=-1)[:, :-1]
    labels = torch.arange(num_classes, device=scores.device).repeat(num_queries)
    top_scores, top_idx = scores.flatten().topk(min(max_per_image, scores.numel()), sorted=False)
    masks = mask_logits[top_idx // num_classes].float()
    binary = masks > 0
    mask_scores = (masks.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    det_scores = (top_scores * mask_scores).cpu()
    return [Detection(label=classnames[int(labels[i])], score=float(s), box=mask_to_box(m),
                      mask=m.cpu().numpy())
            for i, s, m in zip(top_idx.tolist(), det_scores, binary)]


class Mask2FormerDetector:
    def __init__(self, model_name: str = MASK2FORMER, device: str | torch.device = "cpu", tiny: bool = False,
                 classnames: list[str] = CLASSNAMES, max_per_image: int = 100, model=None, processor=None):
        if model is None:
            if tiny:
                model, processor = build_tiny_mask2former(len(classnames))
            else:
                from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation
                model = Mask2FormerForUniversalSegmentation.from_pretrained(model_name)
                processor = AutoImageProcessor.from_pretrained(model_name)
        if model.config.num_labels != len(classnames):
            raise InputError(f"detector has {model.config.num_labels} classes but {len(classnames)} class names; "
                             "use a COCO-instance Mask2Former")
        self.model, self.processor = model.to(device).eval(), processor
        self.device, self.classnames, self.max_per_image = torch.device(device), classnames, max_per_image

    @torch.no_grad()
    def __call__(self, image: Image.Image) -> list[Detection]:
        image = image.convert("RGB")
        inputs = self.processor(images=[image], return_tensors="pt")
        pixel_values = inputs["pixel_values"].to(self.device, self.model.dtype)
        out = self.model(pixel_values=pixel_values, pixel_mask=inputs.get("pixel_mask"))
        masks = F.interpolate(out.masks_queries_logits, size=pixel_values.shape[-2:], mode="bilinear", align_corners=False)
        if "pixel_mask" in inputs:  # crop the padding away: the resized image's extent
            valid = inputs["pixel_mask"][0].bool()
            h, w = int(valid.any(1).sum()), int(valid.any(0).sum())
            masks = masks[..., :h, :w]
        masks = F.interpolate(masks, size=(image.height, image.width), mode="bilinear", align_corners=False)
        return instance_postprocess(out.class_queries_logits[0], masks[0], self.classnames, self.max_per_image)


class CLIPColorClassifier:
    """GenEval's colour rule: CLIP zero-shot over ten colours on the object's mask composited on grey, cropped to its box."""

    def __init__(self, model_name: str = "ViT-L-14-quickgelu", pretrained: str | None = "openai",
                 device: str | torch.device = "cpu", tiny: bool = False, bgcolor: str = "#999", crop: bool = True):
        from skrr.eval.clip_score import load_open_clip

        self.model, self.preprocess, self.tokenizer = load_open_clip(model_name, pretrained, device, tiny)
        self.device, self.bgcolor, self.crop = torch.device(device), bgcolor, crop
        self._classifiers: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _classifier(self, classname: str) -> torch.Tensor:
        """clip_benchmark's zero_shot_classifier: mean of normalised template embeddings, renormalised."""
        if classname not in self._classifiers:
            templates = [f"a photo of a {{c}} {classname}", f"a photo of a {{c}}-colored {classname}",
                         "a photo of a {c} object"]
            weights = []
            for color in COLORS:
                tokens = self.tokenizer([t.format(c=color) for t in templates]).to(self.device)
                emb = F.normalize(self.model.encode_text(tokens).float(), dim=-1).mean(0)
                weights.append(emb / emb.norm())
            self._classifiers[classname] = torch.stack(weights, dim=1)
        return self._classifiers[classname]

    def crops(self, image: Image.Image, detections) -> list[Image.Image]:
        image = image.convert("RGB")
        blank = image.copy() if self.bgcolor == "original" else Image.new("RGB", image.size, color=self.bgcolor)
        out = []
        for d in detections:
            crop = image
            if d.mask is not None:
                if tuple(d.mask.shape) != (image.height, image.width):
                    raise InputError(f"mask shape {d.mask.shape} does not match image {image.size[::-1]}")
                crop = Image.composite(image, blank, Image.fromarray(np.asarray(d.mask, dtype=bool)))
            out.append(crop.crop(tuple(d.box[:4])) if self.crop else crop)
        return out

    @torch.no_grad()
    def classify(self, image: Image.Image, detections, classname: str) -> list[str]:
        if not detections:
            return []
        pixels = torch.stack([self.preprocess(c) for c in self.crops(image, detections)]).to(self.device)
        feats = F.normalize(self.model.encode_image(pixels).float(), dim=-1)
        return [COLORS[i] for i in (feats @ self._classifier(classname)).argmax(1).tolist()]

    def color_fn(self, image: Image.Image):
        return lambda detections, classname: self.classify(image, detections, classname)
