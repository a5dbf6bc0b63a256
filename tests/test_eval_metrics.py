"""FID, CLIP score, DreamSim and the folder scorer on tiny real backbones (offline, random weights)."""
import numpy as np
import pytest
import torch
from PIL import Image
from scipy import linalg

from skrr.eval import fid as fid_mod
from skrr.eval.clip_score import CLIPScore
from skrr.eval.dreamsim_score import DreamSimScore
from skrr.eval.metrics import score_folder
from skrr.eval.tiny import TinyFeatureNet


def random_images(n, seed, size=48, shift=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(np.clip(rng.integers(0, 200, (size, size, 3)) + shift, 0, 255).astype(np.uint8))
            for _ in range(n)]


def save(images, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        img.save(folder / f"{i:05d}.png")
    return folder


def frechet_numpy(a, b):
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    return save(random_images(24, 0), root / "a"), save(random_images(24, 1, shift=50), root / "b")


def test_fid_matches_cleanfid_and_scipy(folders, tmp_path):
    from cleanfid import fid as cleanfid

    a, b = folders
    net = TinyFeatureNet()
    stats = fid_mod.build_reference_stats(a, tmp_path / "ref.npz", feature_extractor=net, resize=299, batch_size=8)
    metric = fid_mod.FID(stats, feature_extractor=net, resize=299)
    images_b = [Image.open(p) for p in sorted(b.iterdir())]
    metric.update(images_b[:10])
    metric.update(images_b[10:])
    ours = metric.compute()
    reference = cleanfid.compute_fid(str(a), str(b), mode="clean", custom_feat_extractor=net, num_workers=0,
                                     batch_size=8, device=torch.device("cpu"), verbose=False)
    feats_a = metric.features([Image.open(p) for p in sorted(a.iterdir())])
    feats_b = metric.item_tensor().numpy()  # the declared per-image state
    assert ours > 0.01
    assert ours == pytest.approx(reference, rel=1e-4)
    assert ours == pytest.approx(frechet_numpy(feats_a, feats_b), rel=1e-4)
    same = fid_mod.FID(stats, feature_extractor=net, resize=299)
    same.update([Image.open(p) for p in sorted(a.iterdir())])
    assert abs(same.compute()) < 1e-4 * ours


def test_fid_torchmetrics_backend_agrees(folders, tmp_path):
    a, b = folders
    net = TinyFeatureNet()
    stats = fid_mod.build_reference_stats(a, tmp_path / "tm.npz", backend="torchmetrics", feature_extractor=net)
    tm = fid_mod.FID(stats, backend="torchmetrics", feature_extractor=net)
    clean = fid_mod.FID(fid_mod.build_reference_stats(a, tmp_path / "c.npz", feature_extractor=net),
                        feature_extractor=net)
    images_b = [Image.open(p) for p in sorted(b.iterdir())]
    tm.update(images_b)
    clean.update(images_b)
    assert tm.compute() == pytest.approx(clean.compute(), rel=1e-3)
    with pytest.raises(ValueError, match="backend"):
        fid_mod.FID(stats, backend="clean", feature_extractor=net)


def test_fid_missing_reference_names_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="build-ref"):
        fid_mod.FID(tmp_path / "nope.npz", feature_extractor=TinyFeatureNet())


def test_clip_score_tiny_is_raw_cosine():
    metric = CLIPScore(tiny=True)
    images = random_images(3, 2)
    prompts = ["a dog", "a cat", "a red car"]
    metric.update(images, prompts)
    scores = metric.item_tensor()
    assert scores.abs().max() <= 1.0 and scores.std() > 0
    # same code path by hand: open_clip embeddings, normalised, dot product
    model, pre, tok = metric.model, metric.preprocess, metric.tokenizer
    with torch.no_grad():
        i = torch.nn.functional.normalize(model.encode_image(torch.stack([pre(x) for x in images])), dim=-1)
        t = torch.nn.functional.normalize(model.encode_text(tok(prompts)), dim=-1)
    assert torch.allclose(scores, (i * t).sum(-1), atol=1e-5)
    assert metric.compute() == pytest.approx(float(scores.mean()))
    with pytest.raises(ValueError, match="one prompt per image"):
        metric.update(images, prompts[:2])


def test_dreamsim_tiny_self_is_one_and_differs():
    metric = DreamSimScore(tiny=True)
    dense, other = random_images(2, 3), random_images(2, 4, shift=40)
    metric.update(dense, ["a", "b"], dense=dense)
    assert metric.compute() == pytest.approx(1.0, abs=1e-5)
    metric.reset()
    metric.update(other, ["a", "b"], dense=dense)
    assert metric.compute() < 0.999
    with pytest.raises(ValueError, match="pairs"):
        metric.update(other[:1], ["a"], dense=dense)


def test_dreamsim_injected_feature_extractor():
    metric = DreamSimScore(feature_extractor=TinyFeatureNet())
    a, b = random_images(3, 5), random_images(3, 6, shift=60)
    metric.update(a, None, dense=a)
    assert metric.compute() == pytest.approx(1.0, abs=1e-5)
    metric.reset()
    metric.update(b, None, dense=a)
    assert metric.compute() < 1.0


def test_fid_with_dense_images_as_reference(folders):
    """Tiny evals without statistics: the dense images given to update are the reference."""
    a, b = folders
    images_a, images_b = ([Image.open(p) for p in sorted(f.iterdir())] for f in (a, b))
    same = fid_mod.FID(tiny=True)
    same.update(images_a, None, dense=images_a)
    assert abs(same.compute()) < 1e-6
    other = fid_mod.FID(tiny=True)
    other.update(images_b[:12], None, dense=images_a[:12])
    other.update(images_b[12:], None, dense=images_a[12:])
    feats = TinyFeatureNet()
    with torch.no_grad():
        fa = feats(torch.stack([torch.from_numpy(np.asarray(x)).permute(2, 0, 1) for x in images_a])).double().numpy()
        fb = feats(torch.stack([torch.from_numpy(np.asarray(x)).permute(2, 0, 1) for x in images_b])).double().numpy()
    assert other.compute() == pytest.approx(frechet_numpy(fb, fa), rel=1e-4)
    with pytest.raises(ValueError, match="metrics.fid.reference_stats"):
        fid_mod.FID.validate({"reference_stats": None, "tiny": False})


def test_folder_scorer_checks_the_image_count(tmp_path):
    metric = CLIPScore(tiny=True)
    folder = save(random_images(2, 7), tmp_path / "imgs")
    with pytest.raises(ValueError, match="holds 2 images but the prompt set has 3"):
        score_folder(metric, folder, ["a", "b", "c"])
    assert -1 <= score_folder(metric, folder, ["a", "b"]) <= 1
    from skrr.prompts.files import load_prompt_file
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ValueError, match="empty"):
        load_prompt_file(empty)
