"""The built wheel carries what a non-editable install needs at run time: every Python module, all
under skrr/ (the upper layers as skrr/baselines, skrr/eval, skrr/experiments), every Hydra config of
the top-level conf/ (as skrr/conf), the real models' meta configs and the toy world's weights."""
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_conf_and_package_data(tmp_path):
    p = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=600,
                       cwd=tmp_path)  # run outside the tree: setuptools' build/ goes to a copy's temp dir
    assert p.returncode == 0, p.stderr[-2000:]
    (wheel,) = tmp_path.glob("skrr-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = {str(f.relative_to(ROOT)) for f in (ROOT / "conf").rglob("*.yaml")}
    assert conf and {f"skrr/{c}" for c in conf} <= names, sorted({f"skrr/{c}" for c in conf} - names)[:5]
    assert "skrr/configs/pixart_sigma.json" in names
    assert "skrr/experiments/toyworld/weights/transformer/diffusion_pytorch_model.safetensors" in names
    modules = {f"skrr/{p.relative_to(ROOT / 'skrr')}" for p in (ROOT / "skrr").rglob("*.py")}
    for folder in ("baselines", "eval", "experiments"):  # installed under skrr/
        modules |= {f"skrr/{p.relative_to(ROOT)}" for p in (ROOT / folder).rglob("*.py")}
    assert modules <= names, sorted(modules - names)  # pyproject's package list misses none
    assert not {n.split("/")[0] for n in names} - {"skrr", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
