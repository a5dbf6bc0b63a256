"""Calibration prompts: prompt files (files), the real prompt sets, COCO captions and the builtin
random captions (real), and the `_target_` sources a calibration config builds (sources)."""
