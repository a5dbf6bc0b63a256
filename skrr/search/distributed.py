"""Data-parallel search: calibration batches shared out across ranks, results exact and independent of N.

Batch b belongs to rank b % N (round-robin over the very batches one process uses). Each rank
computes per-batch numbers (float64 error sums, block influences, cosines) for its own batches
only; `gather_batches` all-gathers them into the full per-batch matrix, identical on every rank,
which the caller then adds up in batch order, exactly as one process does. Every rank therefore
takes the same decisions and stays in lockstep without further messages.

Ranks come from torchrun (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT) or from srun
(SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; the master is the job's first node). A rank that dies
makes the others fail with one `RankLost` line within the timeout instead of waiting forever.
"""
from __future__ import annotations

import datetime
import os
import subprocess

import torch
import torch.distributed as dist

from skrr.search.ranks import env_world

DEFAULT_TIMEOUT_S = 600.0  # a collective waits at most this long for a missing rank


class RankLost(RuntimeError):
    """Another rank died or stopped answering: the search cannot go on."""


def _slurm_master() -> None:
    """MASTER_ADDR/PORT for ranks started by srun: the job's first node, a port derived from the job id."""
    if "MASTER_ADDR" not in os.environ:
        nodes = os.environ.get("SLURM_JOB_NODELIST", "127.0.0.1")
        try:
            first = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                                   check=True, timeout=30).stdout.split()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            first = nodes.split(",")[0]
        os.environ["MASTER_ADDR"] = first
    os.environ.setdefault("MASTER_PORT", str(20000 + int(os.environ.get("SLURM_JOB_ID", 0)) % 20000))


def init_from_env(device: str = "cpu", timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """Join the process group the launcher set up (gloo on CPU, nccl on CUDA); returns the device
    this rank computes on (cuda:<local rank> on CUDA). A single process is left alone."""
    rank, world, local = env_world()
    if world == 1 or dist.is_initialized():
        return device
    if "WORLD_SIZE" not in os.environ:  # srun: the env:// rendezvous reads these
        _slurm_master()
        os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(local))
    cuda = str(device).startswith("cuda")
    if cuda:  # one GPU per local rank; under `srun --gpus-per-task 1` each task sees just its own
        gpu = local % max(torch.cuda.device_count(), 1)
        torch.cuda.set_device(gpu)
        device = f"cuda:{gpu}"
    try:
        dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(seconds=timeout_s))
    except (RuntimeError, ValueError) as e:
        raise RankLost(f"rank {rank} of {world} could not reach the other ranks within {timeout_s:.0f} s "
                       f"({_first_line(e)})") from None
    return device


def close() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def mine(n_batches: int) -> list[int]:
    """The batch indices this rank computes: round-robin, b % world == rank."""
    return list(range(rank(), n_batches, world_size()))


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:200] if text else type(e).__name__


def _collective(fn, what: str):
    try:
        return fn()
    except RuntimeError as e:  # gloo: connection closed / timed out; nccl: watchdog abort
        raise RankLost(f"rank {rank()} of {world_size()} lost the other ranks during {what} "
                       f"({_first_line(e)}); a rank died or hung: see its log") from None


def gather_batches(local: torch.Tensor) -> torch.Tensor:
    """The full per-batch matrix (row b: batch b) from each rank's `local` copy, in which this
    rank filled only its own rows (`mine`). Values are copied from their owner, never added."""
    world = world_size()
    if world == 1:
        return local
    comm = local.cuda() if dist.get_backend() == "nccl" else local
    parts = [torch.empty_like(comm) for _ in range(world)]
    _collective(lambda: dist.all_gather(parts, comm.contiguous()), "the per-batch all-gather")
    rows = torch.arange(local.shape[0])
    return torch.stack(parts).to(local.device)[rows % world, rows]


def sum_int(x: int) -> int:
    """An integer summed over ranks (e.g. sub-block evaluations)."""
    if world_size() == 1:
        return int(x)
    t = torch.tensor([int(x)], dtype=torch.int64, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    _collective(lambda: dist.all_reduce(t), "a sum over ranks")
    return int(t.item())


def barrier(what: str) -> None:
    if world_size() > 1:
        _collective(dist.barrier, what)
