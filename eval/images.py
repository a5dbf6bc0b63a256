"""Image batches in and out of the metrics: PIL lists or uint8 (N,3,H,W) tensors."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from skrr.errors import InputError, MissingFile

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def to_uint8_tensor(images) -> torch.Tensor:
    """The one image converter: a uint8 (N,3,H,W) tensor, or a list of PIL images / (H,W,3) arrays
    (uint8, or float in [0, 1]) of one size -> uint8 (N,3,H,W) CPU tensor."""
    if isinstance(images, torch.Tensor):
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"expected a uint8 tensor (N,3,H,W), got {images.dtype} {tuple(images.shape)}; "
                             "convert with (x * 255).round().to(torch.uint8)")
        return images.cpu()
    arrays = [_uint8_array(img) for img in images]
    if len({a.shape for a in arrays}) > 1:
        raise InputError("images in one batch must share a size; resize them first")
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _uint8_array(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(float) * 255), 0, 255).astype(np.uint8)  # float images in [0, 1]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise InputError(f"expected an RGB image (H, W, 3), got shape {arr.shape}")
    return arr


def to_pil_list(images) -> list[Image.Image]:
    if isinstance(images, torch.Tensor):
        images = to_uint8_tensor(images)
        return [Image.fromarray(x.permute(1, 2, 0).numpy()) for x in images]
    return [img.convert("RGB") if isinstance(img, Image.Image) else Image.fromarray(_uint8_array(img)) for img in images]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder, sorted by the prompt index in their name when they have one."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFile(f"image folder {folder} does not exist; generate or download the images first")
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]

    def key(p: Path):
        m = re.fullmatch(r"(\d+)", p.stem)
        return (0, int(m.group(1)), "") if m else (1, 0, p.name)

    return sorted(files, key=key)


def load_images(paths) -> list[Image.Image]:
    out = []
    for p in paths:
        with Image.open(p) as img:
            out.append(img.convert("RGB"))
    return out


def batched(items, batch_size: int):
    for start in range(0, len(items), batch_size):
        yield items[start:start + batch_size]
