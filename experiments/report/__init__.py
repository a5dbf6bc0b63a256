"""skrr-report's analyses: methods at matched sparsity and their paired differences (compare), the
paper's claims (claims), tables and plots (tables), D against quality (d_predicts), image grids (grids)
and the official GenEval round trip (geneval_official)."""
