"""The search: calibration targets (calibration), the scored forward and its dtype (compute), D, the
reference (discrepancy), the same D with prefix reuse (prefix_cache), beam-search Skip and greedy
Re-use (skip_reuse), calibration batches shared out across ranks (distributed), and NaN/inf as errors
(finite)."""
