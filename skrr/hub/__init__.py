"""Pruned encoders on disk and on the Hub: transformers classes for them (pretrained), save and load of
kept weights (pruned_io), the modelling file a folder carries for `trust_remote_code` (remote_code),
its model card (model_card), and writes that appear whole or not at all (atomic)."""
