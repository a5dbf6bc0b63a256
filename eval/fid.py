"""FID against cached reference statistics, with clean-fid (default) or torchmetrics.

backend "clean": clean-fid's Inception (torchscript) on clean-fid's "clean" resize to 299x299, and
clean-fid's Frechet distance. backend "torchmetrics": torchmetrics' FrechetInceptionDistance (needs
`pip install torch-fidelity` for its Inception) with the cached reference sums loaded into its state.
A feature_extractor (nn.Module: uint8 (N,3,H,W) -> (N,D) float) can replace Inception in both; it
sees the raw uint8 images unless `resize` is set (then clean-fid's float 0..255 resized images).
Reference statistics (npz: mu, sigma, count, backend, feature_dim) are built once per image folder.
Without them (tiny evals only) the dense images passed to `update(..., dense=)` are the reference.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from eval.images import batched, list_images, load_images, to_uint8_tensor
from eval.metrics import Metric
from skrr.errors import InputError, MissingFile

BACKENDS = ("clean", "torchmetrics")


class FID(Metric):
    """Frechet distance of the generated images' features to reference statistics. tiny=True: a
    tiny random feature network instead of Inception (offline); then reference_stats may be None
    and the dense images given to update are the reference (dense FID = 0)."""

    def __init__(self, reference_stats: str | os.PathLike | None = None, backend: str = "clean",
                 feature_extractor: torch.nn.Module | None = None, resize: int | None | str = "auto",
                 device: str | torch.device = "cpu", batch_size: int = 32, tiny: bool = False):
        if backend not in BACKENDS:
            raise InputError(f"unknown FID backend {backend!r}; use one of {BACKENDS}")
        if tiny and feature_extractor is None:
            from eval.tiny import TinyFeatureNet
            feature_extractor = TinyFeatureNet()
        self.backend, self.device, self.batch_size = backend, torch.device(device), batch_size
        self.resize = (299 if feature_extractor is None and backend == "clean" else None) if resize == "auto" else resize
        self._tm = None
        if backend == "torchmetrics":
            from torchmetrics.image.fid import FrechetInceptionDistance
            try:
                self._tm = FrechetInceptionDistance(feature=feature_extractor if feature_extractor is not None else 2048,
                                                    reset_real_features=False).to(self.device)
            except ModuleNotFoundError as e:
                raise ModuleNotFoundError(f"{e}; torchmetrics' Inception needs `pip install torch-fidelity`") from e
            self.model = self._tm.inception
        elif feature_extractor is not None:
            self.model = feature_extractor.to(self.device).eval()
        else:
            from cleanfid.features import build_feature_extractor
            self.model = build_feature_extractor("clean", self.device, use_dataparallel=False)
        self.reference = load_reference_stats(reference_stats, backend) if reference_stats is not None else None
        if self._tm is not None and self.reference is not None:
            _load_into_torchmetrics(self._tm, self.reference)
        self._features: list[np.ndarray] = []
        self._dense: list[np.ndarray] = []  # reference features from the dense images (no stats given)

    @classmethod
    def needs_dense(cls, cfg) -> bool:
        return not cfg.get("reference_stats")

    @classmethod
    def validate(cls, cfg) -> None:
        if not cfg.get("reference_stats") and not cfg.get("tiny"):
            raise InputError("FID needs reference statistics: set metrics.fid.reference_stats=PATH "
                             "(build them once with `python -m eval.fid build-ref`)")

    def preprocess(self, images) -> torch.Tensor:
        x = to_uint8_tensor(images)
        if self.resize is None:
            return x
        from cleanfid.utils import build_resizer  # clean-fid's "clean" PIL-bicubic resize
        fn = build_resizer("clean") if self.resize == 299 else _clean_resizer(self.resize)
        arrays = [np.asarray(fn(img.permute(1, 2, 0).numpy()), dtype=np.float32) for img in x]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def features(self, images) -> np.ndarray:
        x = self.preprocess(images).to(self.device)
        return self.model(x).double().cpu().numpy().reshape(len(x), -1)

    def update(self, images, prompts=None, dense=None) -> None:
        """Generated images; `dense` only when there are no reference statistics (they become the reference)."""
        if dense is not None and self.reference is not None:
            raise InputError("FID got dense images but has reference statistics; pass one or the other")
        if self._tm is not None:  # torchmetrics runs its own feature network on the uint8 batch
            self._tm.update(self.preprocess(images).to(self.device), real=False)
            if dense is not None:
                self._tm.update(self.preprocess(dense).to(self.device), real=True)
            self._features.append(np.zeros((len(images), self.reference["mu"].shape[0] if self.reference else 0)))
            return
        self._features.append(self.features(images))
        if dense is not None:
            self._dense.append(self.features(dense))

    def compute(self) -> float:
        if self._tm is not None and (self.reference is not None or self._dense_count() > 0):
            return float(self._tm.compute())
        reference = self.reference
        if reference is None and self._dense:
            dense = np.concatenate(self._dense)
            reference = {"mu": dense.mean(0), "sigma": np.cov(dense, rowvar=False), "count": len(dense)}
        if reference is None:
            raise InputError("FID has no reference statistics; pass reference_stats= (build them with "
                             "`python -m eval.fid build-ref --images DIR --out STATS.npz`)")
        feats = np.concatenate(self._features) if self._features else np.zeros((0, 0))
        if len(feats) < 2:
            raise InputError(f"FID needs at least 2 images, got {len(feats)}; generate more images")
        if feats.shape[1] != reference["mu"].shape[0]:
            raise InputError(f"features have {feats.shape[1]} dims but the reference statistics {reference['mu'].shape[0]}; "
                             "rebuild the reference with the same feature extractor")
        from cleanfid.fid import frechet_distance
        mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
        return float(frechet_distance(mu, sigma, reference["mu"], reference["sigma"]))

    def _dense_count(self) -> int:
        return int(self._tm.real_features_num_samples)

    def reset(self) -> None:
        self._features, self._dense = [], []
        if self._tm is not None:
            self._tm.reset()


def _clean_resizer(size: int):
    from cleanfid.resize import make_resizer
    return make_resizer("PIL", False, "bicubic", (size, size))


def _load_into_torchmetrics(metric, ref: dict) -> None:
    """torchmetrics keeps sums, not moments: sum = n mu, cov_sum = (n-1) sigma + n mu mu^T."""
    n, mu, sigma = int(ref["count"]), torch.from_numpy(ref["mu"]), torch.from_numpy(ref["sigma"])
    metric.real_features_sum = (n * mu).double().to(metric.real_features_sum.device)
    metric.real_features_cov_sum = ((n - 1) * sigma + n * torch.outer(mu, mu)).double().to(metric.real_features_sum.device)
    metric.real_features_num_samples = torch.tensor(n, device=metric.real_features_sum.device)


def load_reference_stats(path: str | os.PathLike, backend: str = "clean") -> dict:
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"FID reference statistics {path} not found; build them once with "
                                f"`python -m eval.fid build-ref --images REF_DIR --out {path}` (e.g. COCO val2014 resized)")
    with np.load(path) as z:
        ref = {k: z[k] for k in z.files}
    if str(ref.get("backend", backend)) != backend:
        raise InputError(f"{path} was built with backend {ref['backend']} but FID uses {backend}; rebuild it")
    return ref


def build_reference_stats(image_dir: str | os.PathLike, out_path: str | os.PathLike, num: int | None = None,
                          overwrite: bool = False, **fid_kwargs) -> Path:
    """Features of every image in image_dir -> npz of mu, sigma, count (cached: an existing file is reused)."""
    out_path = Path(out_path)
    if out_path.exists() and not overwrite:
        return out_path
    files = list_images(image_dir)[:num]
    if len(files) < 2:
        raise InputError(f"{image_dir} holds {len(files)} images; the reference needs at least 2")
    fid = FID(reference_stats=None, **fid_kwargs)
    feats = np.concatenate([fid.features(load_images(chunk))
                            for chunk in tqdm(list(batched(files, fid.batch_size)), desc="FID reference")])
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp.npz")
    np.savez(tmp, mu=feats.mean(0), sigma=np.cov(feats, rowvar=False), count=len(feats), backend=fid.backend,
             feature_dim=feats.shape[1])
    os.replace(tmp, out_path)
    return out_path


def main(argv=None):
    parser = argparse.ArgumentParser(description="build FID reference statistics once")
    parser.add_argument("command", choices=["build-ref"])
    parser.add_argument("--images", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--num", type=int, default=None)
    parser.add_argument("--backend", default="clean", choices=BACKENDS)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    print(build_reference_stats(args.images, args.out, args.num, backend=args.backend,
                                batch_size=args.batch_size, device=args.device))


if __name__ == "__main__":
    main()
