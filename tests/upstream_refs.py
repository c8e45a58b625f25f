"""mamba-ssm's and causal-conv1d's own pure-PyTorch references, taken from their released sdists.

``make test`` runs ``python tests/upstream_refs.py fetch DIR`` once: it ``pip download``s the pinned sdists
(no build, no dependencies) and keeps only their Python interface files::

    DIR/causal_conv1d/causal_conv1d_interface.py
    DIR/mamba_ssm/ops/selective_scan_interface.py
    DIR/mamba_ssm/utils/torch.py          (custom_fwd/custom_bwd, imported by the interface)

:func:`load` executes those files with stand-ins for the *compiled* modules they import at the top
(``selective_scan_cuda``, ``causal_conv1d_cuda``, the triton layer norm), so upstream's
``selective_scan_ref`` / ``causal_conv1d_ref`` are defined exactly as released; calling a stand-in raises.
Folder: ``$HNC_UPSTREAM_REFS`` or ``<repo>/.venv/upstream_refs``.
"""

from __future__ import annotations

import os
import sys
import tarfile
import tempfile
import types
from pathlib import Path

import pytest

CAUSAL_CONV1D = "1.5.0.post8"
MAMBA_SSM = "2.2.4"
FILES = {f"causal_conv1d-{CAUSAL_CONV1D}": ["causal_conv1d/causal_conv1d_interface.py"],
         f"mamba_ssm-{MAMBA_SSM}": ["mamba_ssm/ops/selective_scan_interface.py", "mamba_ssm/utils/torch.py"]}
REPO = Path(__file__).resolve().parents[1]


def refs_dir() -> Path:
    return Path(os.environ.get("HNC_UPSTREAM_REFS") or REPO / ".venv" / "upstream_refs")


def fetch(dest: Path) -> None:
    """pip download the pinned sdists and extract the interface files into ``dest``."""
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "MAMBA_SKIP_CUDA_BUILD": "TRUE", "CAUSAL_CONV1D_SKIP_CUDA_BUILD": "TRUE"}
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                        "--no-build-isolation", "-d", tmp, f"causal-conv1d=={CAUSAL_CONV1D}",
                        f"mamba-ssm=={MAMBA_SSM}"], check=True, env=env)
        for sdist in Path(tmp).glob("*.tar.gz"):
            root = sdist.name[:-len(".tar.gz")]
            with tarfile.open(sdist) as tar:
                for rel in FILES[root]:
                    member = tar.extractfile(f"{root}/{rel}")
                    out = dest / rel
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_bytes(member.read())
    (dest / "VERSIONS").write_text(f"causal-conv1d {CAUSAL_CONV1D}\nmamba-ssm {MAMBA_SSM}\n")


def _compiled_stand_in(name: str) -> types.ModuleType:
    mod = types.ModuleType(name)

    def __getattr__(attr):
        def unavailable(*a, **k):
            raise RuntimeError(f"{name}.{attr} is a compiled kernel, not available in the CPU tests")
        return unavailable

    mod.__getattr__ = __getattr__
    return mod


def _exec(path: Path, name: str, extra: dict[str, types.ModuleType]) -> types.ModuleType:
    saved = {k: sys.modules.get(k) for k in extra}
    sys.modules.update(extra)
    try:
        mod = types.ModuleType(name)
        mod.__file__ = str(path)
        exec(compile(path.read_text(), str(path), "exec"), mod.__dict__)
        return mod
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def load() -> tuple[types.ModuleType, types.ModuleType]:
    """(causal_conv1d_interface, selective_scan_interface) as released; skip (or fail under
    HNC_REQUIRE_UPSTREAM_REFS=1, as ``make test`` sets it) if the folder was not fetched."""
    root = refs_dir()
    conv_py = root / "causal_conv1d/causal_conv1d_interface.py"
    scan_py = root / "mamba_ssm/ops/selective_scan_interface.py"
    if not (conv_py.exists() and scan_py.exists()):
        msg = (f"upstream reference files not found in {root}; run `python tests/upstream_refs.py fetch {root}` "
               "(make test does)")
        if os.environ.get("HNC_REQUIRE_UPSTREAM_REFS", "") not in ("", "0"):
            pytest.fail(msg)
        pytest.skip(msg)
    conv = _exec(conv_py, "causal_conv1d_interface", {"causal_conv1d_cuda": _compiled_stand_in("causal_conv1d_cuda")})
    utils_torch = _exec(root / "mamba_ssm/utils/torch.py", "mamba_ssm.utils.torch", {})
    pkg = {n: types.ModuleType(n) for n in ("mamba_ssm", "mamba_ssm.utils", "mamba_ssm.ops", "mamba_ssm.ops.triton")}
    stubs = {**pkg, "mamba_ssm.utils.torch": utils_torch,
             "mamba_ssm.ops.triton.layer_norm": _compiled_stand_in("mamba_ssm.ops.triton.layer_norm"),
             "selective_scan_cuda": _compiled_stand_in("selective_scan_cuda"),
             "causal_conv1d_cuda": _compiled_stand_in("causal_conv1d_cuda")}
    scan = _exec(scan_py, "selective_scan_interface", stubs)
    return conv, scan


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "fetch":
        sys.exit("usage: python tests/upstream_refs.py fetch DIR")
    fetch(Path(sys.argv[2]))
    print(f"upstream references in {sys.argv[2]}: causal-conv1d {CAUSAL_CONV1D}, mamba-ssm {MAMBA_SSM}")
