"""Every metric is a torchmetrics.Metric: declared states, so forward, MetricCollection and a real
two-process gloo sync give what one metric on one process gives; per_item reads the declared
`item_scores` state; a mistyped `metrics.<m>` key fails at validation, named in full."""
import json

import numpy as np
import pytest
import torch
import torchmetrics
from PIL import Image

from skrr.eval import fid as fid_mod
from skrr.eval.clip_score import CLIPScore
from skrr.eval.dreamsim_score import DreamSimScore
from skrr.eval.geneval.evaluate import GenEval
from skrr.eval.metrics import Metric
from skrr.eval.per_item import from_metric
from skrr.eval.tiny import TinyFeatureNet


def random_images(n, seed, size=48, shift=0):
    rng = np.random.default_rng(seed)
    return [Image.fromarray(np.clip(rng.integers(0, 200, (size, size, 3)) + shift, 0, 255).astype(np.uint8))
            for _ in range(n)]


def toy_geneval(n, seed):
    """GenEval metadata and the exact renders of their true scenes, every third one blank (wrong)."""
    from skrr.experiments.toyworld.captions import prompts
    from skrr.experiments.toyworld.metrics import prompt_reference_images

    renders = list(prompt_reference_images("geneval", n, seed))
    return [np.zeros_like(r) if i % 3 == 1 else r for i, r in enumerate(renders)], prompts("geneval", n, seed)


def toy_geneval2(n, seed):
    """Toy GenEval 2 rows and the renders of their true scenes, every third one blank."""
    from skrr.experiments.toyworld.geneval2 import prompt_scenes
    from skrr.experiments.toyworld.scenes import render

    pairs = prompt_scenes(n, seed)
    return [np.zeros_like(render(s)) if i % 3 == 1 else render(s) for i, (s, _) in enumerate(pairs)], [r for _, r in pairs]


def toy_geneval2_metric():
    from skrr.eval.geneval2.evaluate import GenEval2
    from skrr.experiments.toyworld.geneval2 import ToyJudge

    return GenEval2(judge=ToyJudge())


def toy_geneval_metric():
    from skrr.experiments.toyworld.detect import ToyDetector

    return GenEval(detector=ToyDetector(), color_classifier=None)


def test_every_metric_class_is_a_torchmetrics_metric_with_declared_states():
    from skrr.eval.geneval2.evaluate import GenEval2
    from skrr.experiments.toyworld.metrics import ToyFID, ToySimilarity

    for cls in (CLIPScore, DreamSimScore, fid_mod.FID, GenEval, GenEval2, ToyFID, ToySimilarity):
        assert issubclass(cls, Metric) and issubclass(cls, torchmetrics.Metric), cls
    metric = DreamSimScore(feature_extractor=TinyFeatureNet())
    assert metric._reductions["item_scores"] is torchmetrics.utilities.dim_zero_cat and metric.item_scores == []
    assert set(toy_geneval_metric().metric_state) == {"item_scores", "item_strata"}
    assert set(fid_mod.FID(tiny=True).metric_state) == {"item_scores", "dense_features"}


def test_collection_gives_each_metric_its_own_value():
    a, b = random_images(6, 0), random_images(6, 1, shift=40)
    prompts = [f"prompt {i}" for i in range(6)]

    def fresh():
        return {"clip": CLIPScore(tiny=True), "dreamsim": DreamSimScore(feature_extractor=TinyFeatureNet()),
                "fid": fid_mod.FID(tiny=True)}

    alone = {}
    for name, metric in fresh().items():
        metric.update(b[:3], prompts[:3], dense=a[:3])
        metric.update(b[3:], prompts[3:], dense=a[3:])
        alone[name] = metric.compute()
    collection = torchmetrics.MetricCollection(fresh())
    collection.update(b[:3], prompts[:3], dense=a[:3])
    collection.update(b[3:], prompts[3:], dense=a[3:])
    together = collection.compute()
    assert together == alone  # exact: the same states, the same arithmetic
    assert 0 < alone["fid"] and alone["dreamsim"] < 1


def test_forward_scores_the_batch_and_keeps_the_total():
    images = random_images(8, 2)
    prompts = [f"a photo of thing {i}" for i in range(8)]
    metric = CLIPScore(tiny=True)
    first = metric(images[:5], prompts[:5])  # forward: the batch's value, accumulated as well
    second = metric(images[5:], prompts[5:])
    batch = CLIPScore(tiny=True)
    batch.update(images[5:], prompts[5:])
    whole = CLIPScore(tiny=True)
    whole.update(images[:5], prompts[:5])
    whole.update(images[5:], prompts[5:])
    assert second == batch.compute() and first != second
    assert metric.compute() == whole.compute()
    assert torch.equal(metric.item_tensor(), whole.item_tensor())

    geneval, (renders, meta) = toy_geneval_metric(), toy_geneval(12, 3)
    on_batch = geneval(renders[:6], meta[:6])
    geneval.update(renders[6:], meta[6:])
    alone = toy_geneval_metric()
    alone.update(renders[:6], meta[:6])
    assert on_batch == alone.compute()
    alone.update(renders[6:], meta[6:])
    assert geneval.compute() == alone.compute()

    geneval2, (renders, rows) = toy_geneval2_metric(), toy_geneval2(12, 3)
    on_batch = geneval2(renders[:6], rows[:6])
    geneval2.update(renders[6:], rows[6:])
    alone = toy_geneval2_metric()
    alone.update(renders[:6], rows[:6])
    assert on_batch == alone.compute()
    alone.update(renders[6:], rows[6:])
    assert geneval2.compute() == alone.compute() and 0 < alone.compute()["overall"] < 1


def test_per_item_reads_the_declared_states(tmp_path):
    a, b = random_images(10, 4), random_images(10, 5, shift=30)
    prompts = [f"p{i % 3}" for i in range(10)]
    clip = CLIPScore(tiny=True)
    clip.update(b, prompts)
    items = from_metric(clip, prompts)
    assert np.array_equal(items.values, clip.item_tensor().double().numpy())
    assert items.value() == pytest.approx(clip.compute(), abs=1e-12) and list(items.clusters) == prompts

    net = TinyFeatureNet()
    folder = tmp_path / "ref"
    folder.mkdir()
    for i, img in enumerate(a):
        img.save(folder / f"{i:05d}.png")
    stats = fid_mod.build_reference_stats(folder, tmp_path / "ref.npz", feature_extractor=net)
    fid = fid_mod.FID(stats, feature_extractor=net)
    fid.update(b)
    items = from_metric(fid, prompts)
    assert items.kind == "fid" and items.values.shape == (10, 16)
    assert items.value() == pytest.approx(fid.compute(), rel=1e-9)
    dense_ref = fid_mod.FID(tiny=True)
    dense_ref.update(b, prompts, dense=a)
    assert from_metric(dense_ref, prompts) is None  # no fixed reference: no per-image FID

    geneval, (renders, meta) = toy_geneval_metric(), toy_geneval(12, 6)
    geneval.update(renders, meta)
    items = from_metric(geneval, meta)
    assert list(items.strata) == [m["tag"] for m in meta] and list(items.clusters) == [m["prompt"] for m in meta]
    assert items.value() == pytest.approx(geneval.compute()["overall"], abs=1e-12)


def test_fid_torchmetrics_backend_is_torchmetrics_fid_exactly():
    """The torchmetrics backend keeps FrechetInceptionDistance's own sums and formula (no writes
    into its states): the same number as torchmetrics' class fed the same features."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = random_images(12, 7), random_images(12, 8, shift=40)
    ours = fid_mod.FID(backend="torchmetrics", feature_extractor=TinyFeatureNet())
    theirs = FrechetInceptionDistance(feature=TinyFeatureNet())
    for half in (slice(0, 6), slice(6, 12)):
        ours.update(b[half], dense=a[half])
        theirs.update(ours.preprocess(b[half]), real=False)
        theirs.update(ours.preprocess(a[half]), real=True)
    assert ours.compute() == float(theirs.compute()) > 0


def _sync_worker(rank: int, world: int, init: str, out: str, ref_stats: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    a, b = random_images(12, 10), random_images(12, 11, shift=40)
    renders, meta = toy_geneval(12, 12)
    mine = slice(6 * rank, 6 * rank + 6)
    metrics = {"dreamsim": DreamSimScore(feature_extractor=TinyFeatureNet()), "fid_dense": fid_mod.FID(tiny=True),
               "fid_ref": fid_mod.FID(ref_stats, feature_extractor=TinyFeatureNet()),
               "fid_tm": fid_mod.FID(backend="torchmetrics", feature_extractor=TinyFeatureNet())}
    result = {}
    for name, metric in metrics.items():
        metric.update(b[mine], None, dense=None if name == "fid_ref" else a[mine])
        result[name] = metric.compute()  # syncs: the states of both ranks
    geneval = toy_geneval_metric()
    geneval.update(renders[mine], meta[mine])
    result["geneval"] = geneval.compute()
    geneval.sync()
    result["geneval_items"] = from_metric(geneval, meta).values.tolist()
    geneval.unsync()
    result["local_items"] = len(geneval.item_tensor())
    renders2, rows2 = toy_geneval2(12, 14)
    geneval2 = toy_geneval2_metric()
    geneval2.update(renders2[mine], rows2[mine])
    result["geneval2"] = geneval2.compute()  # question-level states too: every breakdown of both ranks
    if rank == 0:
        with open(out, "w") as f:
            json.dump(result, f)
    dist.destroy_process_group()


def test_two_gloo_ranks_sync_to_the_one_process_value(tmp_path):
    import torch.multiprocessing as mp

    folder = tmp_path / "ref"
    folder.mkdir()
    for i, img in enumerate(random_images(12, 13, shift=20)):
        img.save(folder / f"{i:05d}.png")
    stats = str(fid_mod.build_reference_stats(folder, tmp_path / "ref.npz", feature_extractor=TinyFeatureNet()))
    out = tmp_path / "two.json"
    mp.start_processes(_sync_worker, args=(2, f"file://{tmp_path / 'rendezvous'}", str(out), stats), nprocs=2,
                       join=True, start_method="fork")  # fork: the ranks start without importing again
    two = json.loads(out.read_text())

    a, b = random_images(12, 10), random_images(12, 11, shift=40)
    renders, meta = toy_geneval(12, 12)
    one = {}
    for name, metric in {"dreamsim": DreamSimScore(feature_extractor=TinyFeatureNet()),
                         "fid_dense": fid_mod.FID(tiny=True), "fid_ref": fid_mod.FID(stats, feature_extractor=TinyFeatureNet()),
                         "fid_tm": fid_mod.FID(backend="torchmetrics", feature_extractor=TinyFeatureNet())}.items():
        for half in (slice(0, 6), slice(6, 12)):  # the two ranks' shares, in rank order
            metric.update(b[half], None, dense=None if name == "fid_ref" else a[half])
        one[name] = metric.compute()
    geneval = toy_geneval_metric()
    geneval.update(renders, meta)
    one["geneval"] = geneval.compute()
    one["geneval_items"] = from_metric(geneval, meta).values.tolist()
    renders2, rows2 = toy_geneval2(12, 14)
    geneval2 = toy_geneval2_metric()
    geneval2.update(renders2, rows2)
    one["geneval2"] = geneval2.compute()
    assert two.pop("local_items") == 6  # unsync gave rank 0 back its own half
    assert two == one  # every value exactly, GenEval's per-image scores in order
    assert 0 < one["geneval"]["overall"] < 1 and one["fid_tm"] > 0


def test_a_mistyped_metric_key_fails_at_validation_naming_it(tmp_path):
    from hydra import compose, initialize_config_dir

    from skrr.errors import ConfigError
    from skrr.experiments.cli.app import CONF_DIR
    from skrr.experiments.runner.job import validate

    for override, key in (("+metrics.clip.batchsize=4", "metrics.clip.batchsize"),
                          ("+metrics.geneval.treshold=0.5", "metrics.geneval.treshold"),
                          ("+metrics.efficiency.hieght=8", "metrics.efficiency.hieght")):
        with initialize_config_dir(config_dir=CONF_DIR, version_base=None):
            cfg = compose(config_name="run", overrides=[f"paths.root={tmp_path}", "eval=smoke", "method=dense",
                                                        "eval.metrics=[clip,geneval,efficiency]", override])
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
            validate(cfg)
        assert "\n" not in str(e.value) and e.value.key == key
    from skrr.eval.metrics import build_metric

    with pytest.raises(ConfigError, match=r"metrics\.clip\.batchsize is not a setting of CLIPScore; did you mean batch_size"):
        build_metric({"_target_": "skrr.eval.clip_score.CLIPScore", "tiny": True, "batchsize": 4}, "clip")  # nothing built
    with pytest.raises(ConfigError, match=r"metrics\.geneval\.resample must be 'prompt' or 'image'"):
        build_metric({"_target_": "skrr.eval.geneval.evaluate.GenEval", "detector": {"_target_": "skrr.experiments.toyworld.detect.ToyDetector"},
                      "color_classifier": None, "resample": "seed"}, "geneval")
