"""FID against cached reference statistics, with clean-fid (default) or torchmetrics.

backend "clean": clean-fid's Inception (torchscript) on clean-fid's "clean" resize to 299x299, and
clean-fid's Frechet distance. backend "torchmetrics": torchmetrics' FrechetInceptionDistance's
Inception (needs `pip install torch-fidelity`), sums and formula, with the cached reference
statistics turned into the sums it would have kept.
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
from torchmetrics.utilities import dim_zero_cat
from tqdm.auto import tqdm

from skrr.errors import InputError, MissingFile
from skrr.eval.images import batched, list_images, load_images, to_uint8_tensor
from skrr.eval.metrics import Metric

BACKENDS = ("clean", "torchmetrics")


class FID(Metric):
    """Frechet distance of the generated images' features to reference statistics. tiny=True: a
    tiny random feature network instead of Inception (offline); then reference_stats may be None
    and the dense images given to update are the reference (dense FID = 0).

    States (add_state): backend "clean" keeps every image's features, `item_scores` (N, D) float64,
    and the dense images' `dense_features` ("cat": sync gathers them, and per_item bootstraps the
    rows). Backend "torchmetrics" keeps torchmetrics' FrechetInceptionDistance sums ("sum": sync
    adds them) and computes its formula; it has no per-image rows (item_kind None). The reference
    statistics are a constant of the metric, not a state: sync never adds them up across ranks."""
    higher_is_better = False
    item_kind = "fid"

    def __init__(self, reference_stats: str | os.PathLike | None = None, backend: str = "clean",
                 feature_extractor: torch.nn.Module | None = None, resize: int | None | str = "auto",
                 device: str | torch.device = "cpu", batch_size: int = 32, tiny: bool = False):
        super().__init__()
        if backend not in BACKENDS:
            raise InputError(f"unknown FID backend {backend!r}; use one of {BACKENDS}")
        if tiny and feature_extractor is None:
            from skrr.eval.tiny import TinyFeatureNet
            feature_extractor = TinyFeatureNet()
        self.backend, self.batch_size = backend, batch_size
        self.resize = (299 if feature_extractor is None and backend == "clean" else None) if resize == "auto" else resize
        if feature_extractor is not None:
            self.model = feature_extractor.eval()
        elif backend == "torchmetrics":
            self.model = _torchmetrics_inception()
        else:
            from cleanfid.features import build_feature_extractor
            self.model = build_feature_extractor("clean", torch.device(device), use_dataparallel=False)
        self.reference = load_reference_stats(reference_stats, backend) if reference_stats is not None else None
        if backend == "torchmetrics":
            self.item_kind = None
            dim = _num_features(self.model)
            for side in ("fake", "real"):  # torchmetrics' states; "real" counts the dense images only
                self.add_state(f"{side}_sum", torch.zeros(dim, dtype=torch.float64), dist_reduce_fx="sum")
                self.add_state(f"{side}_cov_sum", torch.zeros(dim, dim, dtype=torch.float64), dist_reduce_fx="sum")
                self.add_state(f"{side}_num", torch.tensor(0), dist_reduce_fx="sum")
            self.feature_dtype = torch.float32  # the network's output dtype: the value is cast to it, as torchmetrics does
        else:
            self.add_state("dense_features", [], dist_reduce_fx="cat")
        self.to(device)

    @classmethod
    def needs_dense(cls, cfg) -> bool:
        return not cfg.get("reference_stats")

    @classmethod
    def validate(cls, cfg) -> None:
        if not cfg.get("reference_stats") and not cfg.get("tiny"):
            raise InputError("FID needs reference statistics: set metrics.fid.reference_stats=PATH "
                             "(build them once with `python -m skrr.eval.fid build-ref`)")

    def preprocess(self, images) -> torch.Tensor:
        x = to_uint8_tensor(images)
        if self.resize is None:
            return x
        from cleanfid.utils import build_resizer  # clean-fid's "clean" PIL-bicubic resize
        fn = build_resizer("clean") if self.resize == 299 else _clean_resizer(self.resize)
        arrays = [np.asarray(fn(img.permute(1, 2, 0).numpy()), dtype=np.float32) for img in x]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def feature_tensor(self, images) -> torch.Tensor:
        """(N, D) features in the network's dtype, on the metric's device."""
        x = self.preprocess(images).to(self.device)
        return self.model(x).reshape(len(x), -1)

    def features(self, images) -> np.ndarray:
        return self.feature_tensor(images).double().cpu().numpy()

    def update(self, images, prompts=None, dense=None) -> None:
        """Generated images; `dense` only when there are no reference statistics (they become the reference)."""
        if dense is not None and self.reference is not None:
            raise InputError("FID got dense images but has reference statistics; pass one or the other")
        if self.backend == "torchmetrics":
            self._add_sums("fake", self.feature_tensor(images))
            if dense is not None:
                self._add_sums("real", self.feature_tensor(dense))
            return
        self.item_scores.append(torch.from_numpy(self.features(images)))
        if dense is not None:
            self.dense_features.append(torch.from_numpy(self.features(dense)))

    def _add_sums(self, side: str, features: torch.Tensor) -> None:
        """torchmetrics' FrechetInceptionDistance.update, line for line (float64 sums, a count)."""
        self.feature_dtype = features.dtype
        f = features.double()
        getattr(self, f"{side}_sum").add_(f.sum(dim=0))
        getattr(self, f"{side}_cov_sum").add_(f.t().mm(f))
        setattr(self, f"{side}_num", getattr(self, f"{side}_num") + len(f))

    def compute(self) -> float:
        if self.backend == "torchmetrics" and (self.reference is not None or int(self.real_num) > 0):
            return self._torchmetrics_value()
        reference = self.reference
        dense = self.dense_features if self.backend == "clean" else []
        if reference is None and len(dense):
            dense = dim_zero_cat(dense).numpy()
            reference = {"mu": dense.mean(0), "sigma": np.cov(dense, rowvar=False), "count": len(dense)}
        if reference is None:
            raise InputError("FID has no reference statistics; pass reference_stats= (build them with "
                             "`python -m skrr.eval.fid build-ref --images DIR --out STATS.npz`)")
        feats = self.item_tensor().numpy() if self.backend == "clean" else np.zeros((int(self.fake_num), 0))
        if len(feats) < 2:
            raise InputError(f"FID needs at least 2 images, got {len(feats)}; generate more images")
        if feats.shape[1] != reference["mu"].shape[0]:
            raise InputError(f"features have {feats.shape[1]} dims but the reference statistics {reference['mu'].shape[0]}; "
                             "rebuild the reference with the same feature extractor")
        from cleanfid.fid import frechet_distance
        mu, sigma = feats.mean(0), np.cov(feats, rowvar=False)
        return float(frechet_distance(mu, sigma, reference["mu"], reference["sigma"]))

    def _torchmetrics_value(self) -> float:
        """torchmetrics' FrechetInceptionDistance.compute on these sums; the reference statistics
        enter as the sums it would have kept: sum = n mu, cov_sum = (n-1) sigma + n mu mu^T."""
        from torchmetrics.image.fid import _compute_fid

        if self.reference is not None:
            n, mu = int(self.reference["count"]), torch.from_numpy(self.reference["mu"])
            sigma = torch.from_numpy(self.reference["sigma"])
            real = tuple(t.to(self.device) for t in ((n * mu).double(), ((n - 1) * sigma + n * torch.outer(mu, mu)).double(),
                                                     torch.tensor(n)))
        else:
            real = (self.real_sum, self.real_cov_sum, self.real_num)
        if int(real[2]) < 2 or int(self.fake_num) < 2:
            raise InputError(f"FID needs at least 2 images on each side, got {int(self.fake_num)} generated "
                             f"and {int(real[2])} reference; generate more images")
        mean_real, cov_real = _moments(*real)
        mean_fake, cov_fake = _moments(self.fake_sum, self.fake_cov_sum, self.fake_num)
        return float(_compute_fid(mean_real, cov_real, mean_fake, cov_fake).to(self.feature_dtype))


def _moments(total: torch.Tensor, cov_sum: torch.Tensor, n: torch.Tensor):
    """Mean and covariance from torchmetrics' sums, as FrechetInceptionDistance.compute does."""
    mean = (total / n).unsqueeze(0)
    return mean.squeeze(0), (cov_sum - n * mean.t().mm(mean)) / (n - 1)


def _num_features(model: torch.nn.Module) -> int:
    """The feature width, found as torchmetrics finds it: `num_features`, else one dummy image."""
    if hasattr(model, "num_features"):
        return int(model.num_features)
    with torch.no_grad():
        return int(model(torch.randint(0, 255, (1, 3, 299, 299), dtype=torch.uint8)).shape[-1])


def _torchmetrics_inception():
    from torchmetrics.image.fid import NoTrainInceptionV3
    try:
        return NoTrainInceptionV3(name="inception-v3-compat", features_list=["2048"])
    except ModuleNotFoundError as e:
        raise ModuleNotFoundError(f"{e}; torchmetrics' Inception needs `pip install torch-fidelity`") from e


def _clean_resizer(size: int):
    from cleanfid.resize import make_resizer
    return make_resizer("PIL", False, "bicubic", (size, size))


def load_reference_stats(path: str | os.PathLike, backend: str = "clean") -> dict:
    path = Path(path)
    if not path.is_file():
        raise MissingFile(f"FID reference statistics {path} not found; build them once with "
                                f"`python -m skrr.eval.fid build-ref --images REF_DIR --out {path}` (e.g. COCO val2014 resized)")
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
