"""Artifacts are written atomically and with the modes the user's umask gives ordinary files."""
import os
import stat

import pytest
import torch

from skrr import Plan, apply_plan, save_pruned
from skrr.hub.atomic import atomic_path, current_umask


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_current_umask_reads_without_changing_it(umask):
    assert current_umask() == umask
    assert current_umask() == umask


def test_plan_and_changed_weights_follow_the_umask(umask, tmp_path):
    plan = Plan(skip=[1], info={"_weights": {"w": torch.ones(2)}})
    path = plan.save(tmp_path / "plan.json")
    assert _mode(path) == 0o666 & ~umask
    assert _mode(tmp_path / "plan_weights.safetensors") == 0o666 & ~umask


def test_pruned_dir_and_files_follow_the_umask(umask, tiny_t5, tmp_path):
    plan = Plan(skip=[3, 4])
    apply_plan(tiny_t5, plan, name="tiny")
    directory = save_pruned(tiny_t5, plan, tmp_path / "pruned")
    assert _mode(directory) == 0o777 & ~umask
    assert {p.name: _mode(p) for p in directory.iterdir()} == {
        n: 0o666 & ~umask for n in ("config.json", "model.safetensors", "plan.json", "modeling_skrr.py", "README.md")}
    expected = {0o022: (0o755, 0o644), 0o027: (0o750, 0o640)}[umask]
    assert (_mode(directory), _mode(directory / "plan.json")) == expected


def test_failed_write_leaves_the_old_artifact_and_no_temporary(tmp_path):
    target = tmp_path / "a.json"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    (tmp_path / "d").mkdir()
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_path(tmp_path / "d", directory=True) as tmp:
            (tmp / "x").write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "d"]
