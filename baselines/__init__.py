"""The baselines (installed as skrr.baselines): ShortGPT, LaCo and FinerCut as Methods on the core,
with the optional Skrr Re-use phase they share (common)."""
