"""GenEval without mmcv/mmdet: prompts, the official decision rules, a transformers detector."""
