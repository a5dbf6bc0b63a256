"""Shared fixtures: everything offline, one thread, tiny pipelines built once per session."""
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def skrr_cache(tmp_path_factory):
    """A private SKRR_CACHE: tiny pipelines are built from seeded configs once per session (per
    xdist worker) and never touch the user's cache."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # workers of one run share their parent dir
        base = base.parent
    root = base / "skrr_cache"
    root.mkdir(parents=True, exist_ok=True)
    old = os.environ.get("SKRR_CACHE")
    os.environ["SKRR_CACHE"] = str(root)
    yield root
    if old is None:
        os.environ.pop("SKRR_CACHE", None)
    else:
        os.environ["SKRR_CACHE"] = old


@pytest.fixture
def tiny_t5():
    """A 6-block (12 sub-block) T5 encoder with seeded random weights, in eval mode."""
    from skrr.models.tiny import tiny_t5 as build

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return build().eval()


@pytest.fixture
def tiny_clip():
    """A 3-block (6 sub-block) CLIP text model with seeded random weights, in eval mode."""
    from transformers import CLIPTextModel

    from skrr.models.tiny import _tiny_clip

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return _tiny_clip(CLIPTextModel).eval()


@pytest.fixture
def t5_inputs():
    """Two prompts of different lengths: the second is padded and masked."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 300, (2, 12), generator=g)
    mask = torch.ones_like(ids)
    ids[0, 11] = 1  # </s>
    ids[1, 7] = 1
    ids[1, 8:] = 0  # <pad>
    mask[1, 8:] = 0
    return ids, mask


@pytest.fixture
def inspect_cli(monkeypatch, capsys):
    """skrr-inspect in-process (faster than the console script): call with its arguments, get
    (exit status, stdout, stderr)."""
    from skrr.experiments.cli import inspect as inspect_app

    def run(*args):
        monkeypatch.setattr(sys, "argv", ["skrr-inspect", *args])
        code = 0
        try:
            inspect_app.main()
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return code, out, err
    return run
