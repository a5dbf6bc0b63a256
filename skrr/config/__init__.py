"""Configs to objects: building a `_target_` class with its keys checked (build), the shipped config
files (files), range checks of numeric settings (ranges), and the module names of before the re-layout
(legacy)."""
