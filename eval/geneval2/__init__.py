"""GenEval 2 (Soft-TIFA, arXiv 2512.16853) re-implemented: the user's prompt file, a VQA judge, the scores."""
