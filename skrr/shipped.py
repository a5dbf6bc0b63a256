"""Files shipped inside the package that code reads by path: the real models' configs (skrr/configs),
from which their encoders and pipelines are built on the meta device (no weights)."""
from __future__ import annotations

from pathlib import Path

CONFIGS_DIR = Path(__file__).resolve().parent / "configs"
