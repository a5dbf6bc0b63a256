"""Evaluation (installed as skrr.eval): image generation (generate, sampler, prompts, images), the
metrics as torchmetrics Metrics (metrics, fid, clip_score, dreamsim_score, geneval/), per-image scores
and their intervals (per_item, intervals), and tiny offline backbones (tiny)."""
