"""The upper layer (installed as skrr.experiments): the console scripts (cli), skrr-run's machinery
(runner), skrr-report's analyses (report), and the toy world, a trained CPU-scale testbed (toyworld)."""
