"""Which rank this process is, read from torchrun's or srun's environment without importing torch
(a console script asks before it checks its arguments)."""
from __future__ import annotations

import os


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's or srun's environment; (0, 1, 0) otherwise."""
    if "WORLD_SIZE" in os.environ:
        return int(os.environ.get("RANK", 0)), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0))
    if int(os.environ.get("SLURM_NTASKS", 1)) > 1 and "SLURM_PROCID" in os.environ:
        return int(os.environ["SLURM_PROCID"]), int(os.environ["SLURM_NTASKS"]), int(os.environ.get("SLURM_LOCALID", 0))
    return 0, 1, 0
