"""Text encoders as an ordered list of residual sub-blocks (attention, FFN): the shared view
(sub_blocks), T5 and CLIP and the dispatch for every family (view), decoder-only LLMs (decoder_only),
applying a plan (surgery) and quantizing what is kept (quantize)."""
