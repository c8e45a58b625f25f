"""numba ``cache=True`` in a locked-down container: package folder and $HOME not writable."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import warnings, torch
warnings.simplefilter("always")
from nnunet_plugins.ops import selective_scan_fn, selective_scan_ref
from nnunet_plugins.ops import scan_numba
u = torch.randn(1, 4, 70); dt = torch.rand(1, 4, 70); A = -torch.rand(4, 3); B = torch.randn(1, 3, 70)
out = selective_scan_fn(u, dt, A, B, B.clone())
assert torch.allclose(out, selective_scan_ref(u, dt, A, B, B.clone()), atol=1e-5)
print("CACHE", scan_numba.CACHE_DIR)
"""


def _locked_copy(tmp_path: Path) -> tuple[Path, dict]:
    """A copy of the ops package whose __pycache__ is a plain file and whose $HOME cannot be created: no
    in-tree and no user-wide numba cache (as a read-only package dir and home give; works as root too)."""
    pkg = tmp_path / "site" / "nnunet_plugins"
    shutil.copytree(REPO / "nnunet_plugins" / "ops", pkg / "ops", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "nnunet_plugins" / "__init__.py", pkg / "__init__.py")
    (pkg / "ops" / "__pycache__").write_text("not a directory")
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    for p in sorted(pkg.rglob("*"), reverse=True):
        p.chmod(0o555 if p.is_dir() else 0o444)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_") and k != "XDG_CACHE_HOME"}
    env.update(PYTHONPATH=str(tmp_path / "site"), HOME=str(blocker / "home"), XDG_CACHE_HOME=str(blocker / "cache"),
               PYTHONDONTWRITEBYTECODE="1", HNC_SCAN_BACKEND="portable")
    return tmp_path / "site", env


def test_kernels_run_when_package_dir_and_home_are_read_only(tmp_path):
    site, env = _locked_copy(tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env["TMPDIR"] = str(tmp)
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, cwd=tmp_path, capture_output=True, text=True,
                              timeout=600)
    finally:
        for p in site.rglob("*"):
            p.chmod(0o755 if p.is_dir() else 0o644)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"CACHE {tmp}" in proc.stdout  # fell back to a writable temporary cache folder
    assert any((tmp).rglob("*.nbi")), "numba index files were written to the fallback folder"


def test_cache_choice_falls_back_to_no_cache(tmp_path, monkeypatch):
    from nnunet_plugins.ops import numba_cache

    blocker = tmp_path / "f"
    blocker.write_text("")
    src = tmp_path / "pkg" / "mod.py"
    src.parent.mkdir()
    (src.parent / "__pycache__").write_text("")
    monkeypatch.setattr(numba_cache, "_user_wide_dir", lambda: str(blocker / "user"))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    with pytest.warns(RuntimeWarning, match="numba kernels are not cached"):
        assert numba_cache.choose(str(src), fallback=str(blocker / "tmp")) == (False, None)
    assert numba_cache.choose(str(src), fallback=str(tmp_path / "ok")) == (True, str(tmp_path / "ok"))
    (src.parent / "__pycache__").unlink()
    assert numba_cache.choose(str(src), fallback=str(blocker / "tmp")) == (True, None)  # in-tree cache works

