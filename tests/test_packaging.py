"""Release packaging: sdist -> wheel with ``python -m build``, wheel installed into a fresh venv next to
nnU-Net, ``-tr HecMambaTrainer`` found with no environment variable set."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PTH = "hnc_petct_nnunet.pth"


def _clean_checkout(dst: Path) -> Path:
    """The tracked (and not ignored) files of the working tree, as a clean clone would have them."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        if (REPO / rel).is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / rel, dst / rel)
    return dst


def test_nnunet_requirement_is_the_version_with_trainer_discovery():
    import tomllib

    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "nnunetv2>=2.8" in deps  # nnUNet_extTrainer discovery exists from 2.8.0 on


@pytest.mark.slow
def test_build_sdist_then_wheel_and_find_trainer_in_fresh_venv(tmp_path):
    src = _clean_checkout(tmp_path / "src")
    dist = tmp_path / "dist"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "nnUNet_extTrainer")}
    # no build isolation: the build requirements (setuptools, wheel) come from this environment (offline CI)
    proc = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(src)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    sdist, = dist.glob("*.tar.gz")
    wheel, = dist.glob("*.whl")
    with tarfile.open(sdist) as t:
        assert any(n.endswith(f"nnunet_plugins/{PTH}") for n in t.getnames())
    with zipfile.ZipFile(wheel) as z:
        assert PTH in z.namelist()  # lands in site-packages

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    vpy = venv / "bin" / "python"
    site = Path(subprocess.run([str(vpy), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # nnU-Net, torch and pip from this environment (path line only: its own .pth hooks are not run)
    (site / "_shared_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(vpy), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                    str(wheel)], env=env, cwd=tmp_path, check=True, timeout=300)
    assert (site / PTH).is_file()
    probe = ("import os, nnunet_plugins\n"
             "from nnunetv2.run.run_training import recursive_find_trainer_class_by_name as find\n"
             "cls = find('HecMambaTrainer')\n"
             "print(cls.__module__, cls.__init__.__code__.co_filename, nnunet_plugins.__file__)\n")
    out = subprocess.run([str(vpy), "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    module, trainer_file, pkg_file = out.stdout.split()[-3:]
    assert module == "HecMambaTrainer"
    assert trainer_file.startswith(str(site)) and pkg_file.startswith(str(site)), out.stdout
