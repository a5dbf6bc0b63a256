"""One evaluation pass from an eval config (conf/eval/*.yaml): generate, then every selected metric."""
from __future__ import annotations

from pathlib import Path

from eval import generate as gen
from eval.metrics import build_metric, evaluate_folder, fid_needs_reference_stats, fid_reference_from_dense, metric_config


def prompt_sets(cfg) -> dict[str, list]:
    """{'text': prompts, 'geneval': metadata rows (one per image)} from cfg.prompts."""
    from eval import prompts as P
    from eval.geneval.evaluate import expand_metadata

    p = cfg.prompts
    text = list(p.text) if p.get("text") else None
    if p.get("coco_captions"):
        text = P.load_coco_captions(p.coco_captions, p.get("coco_num", 30_000), p.get("coco_seed", 0))
    metadata = None
    if p.get("toyworld"):  # toy-world GenEval-style prompts, as the text set and/or the GenEval set
        from experiments import toyworld
        rows = toyworld.prompts("geneval", int(p.toyworld.n), int(p.toyworld.seed))
        text = [m["prompt"] for m in rows] if p.get("toyworld_text", True) else text
        metadata = rows if p.get("toyworld_geneval", True) else None
    elif p.get("geneval_metadata"):
        metadata = P.load_geneval_metadata(p.geneval_metadata)
    elif p.get("geneval_generated"):
        from eval.geneval.prompts import generate_suite
        suite = generate_suite(n=p.geneval_generated)
        metadata = [m for m in suite if m["tag"] != "single_object"] + suite[:p.geneval_generated]
    sets = {}
    if text is not None:
        sets["text"] = P._check_nonempty(text, "cfg.prompts.text")
    if metadata is not None:
        sets["geneval"] = expand_metadata(metadata, p.get("geneval_images_per_prompt", 4))
    return sets


def evaluate(cfg, pipe, out_dir, dense_dir=None) -> dict:
    """Generate images for cfg's prompt sets into out_dir (resuming) and compute cfg.metrics."""
    unknown = [m for m in cfg.metrics if m not in ("fid", "clip", "dreamsim", "geneval", "efficiency")]
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from fid, clip, dreamsim, geneval, efficiency")
    metric_cfgs = {name: metric_config(name, cfg) for name in cfg.metrics}  # fail fast on bad config
    if "fid" in cfg.metrics and fid_needs_reference_stats(metric_cfgs["fid"]):
        raise ValueError("metrics.fid.reference_stats is unset; build it with `python -m eval.fid build-ref`")
    sets = prompt_sets(cfg)
    sampler = gen.SamplerConfig(**cfg.sampler)
    out_dir = Path(out_dir)
    for name, prompts in sets.items():
        texts = [m["prompt"] for m in prompts] if name == "geneval" else prompts
        gen.generate(pipe, texts, out_dir / name, sampler, rank=0, world_size=1)
        gen.merge(out_dir / name, len(texts))
    results = {}
    for name in cfg.metrics:
        metric = build_metric(name, metric_cfgs[name])
        if name == "efficiency":
            metric.settings.update(height=sampler.height, width=sampler.width,
                                   num_inference_steps=sampler.num_inference_steps, guidance_scale=sampler.guidance_scale)
            metric.update(pipe)
            results[name] = metric.compute()
        elif name == "geneval":
            results[name] = evaluate_folder(name, metric, out_dir / "geneval", sets["geneval"], 1)
        elif name == "fid" and fid_reference_from_dense(metric_cfgs["fid"]):
            from eval.fid import build_reference_stats, load_reference_stats  # smoke: the text set is its own reference
            ref = build_reference_stats(out_dir / "text", out_dir / "fid_ref_tiny.npz", feature_extractor=metric.model)
            metric.reference = load_reference_stats(ref)
            results[name] = evaluate_folder(name, metric, out_dir / "text", sets["text"])
        elif name == "dreamsim":
            results[name] = evaluate_folder(name, metric, out_dir / "text", sets["text"],
                                            dense_dir=dense_dir or out_dir / "text")
        else:
            results[name] = evaluate_folder(name, metric, out_dir / "text", sets["text"])
    return results
