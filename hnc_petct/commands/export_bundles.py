"""``hnc-petct export-bundles``: the three trained bundles of a finished main-job run, ready to serve.

    hnc-petct export-bundles demo/out demo/bundles
    python -m hnc_petct.clinic_app -i STUDY -o OUT -m demo/bundles

Copies each shipped bundle folder (``configs/``, ``docs/``, LICENSE, ``large_files.yml``) and fills its
``models/`` from the run: the HecMamba fold of ``RUN_OUT/segmentation`` exported with
:func:`nnunet_plugins.bundle.export.export_fold`, ``RUN_OUT/rfs/models`` and ``RUN_OUT/dm/models`` (each with its
``model.ts`` and hashes). Everything is assembled in ``BUNDLES_DIR.partial`` and moved into place when complete;
an existing ``BUNDLES_DIR`` is never overwritten.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from hnc_petct.clinic_app.bundles import DM as _DM, REPO_BUNDLES, RFS as _RFS, SEG as _SEG

SEG, RFS, DM = _SEG.folder, _RFS.folder, _DM.folder  # the bundle folder names the clinic app resolves


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_OUT", help="output folder of a finished `hnc-petct run`")
    p.add_argument("bundles_dir", metavar="BUNDLES_DIR", help="new folder for the three trained bundles")
    p.add_argument("--fold", type=int, default=0, help="nnU-Net fold to export (default 0, the one the job trains)")


def seg_fold_dir(run_dir: Path, fold: int) -> Path:
    """``RUN_OUT/segmentation/nnUNet_results/Dataset*/HecMamba*__*/fold_N`` (exactly one, finished)."""
    found = sorted((run_dir / "segmentation" / "nnUNet_results").glob(f"Dataset*/HecMambaTrainer*__*__*/fold_{fold}"))
    found = [f for f in found if (f / "checkpoint_final.pth").is_file()]
    if len(found) != 1:
        raise FileNotFoundError(f"expected one finished HecMamba fold {fold} under {run_dir / 'segmentation'}, "
                                f"found {len(found)}: run `hnc-petct run` with the segmentation stage first")
    return found[0]


def _copy_bundle(name: str, dest: Path) -> None:
    import shutil

    shutil.copytree(REPO_BUNDLES / name, dest, ignore=shutil.ignore_patterns("models", "eval", "__pycache__"))
    (dest / "models").mkdir()


def export_bundles(run_dir: str | Path, bundles_dir: str | Path, fold: int = 0) -> dict[str, Path]:
    """Write ``bundles_dir/{seg,rfs,dm bundle}``; returns bundle name -> folder."""
    import shutil

    from nnunet_plugins.bundle.export import export_fold

    run_dir, out = Path(run_dir), Path(bundles_dir)
    if out.exists():
        raise FileExistsError(f"{out} exists: choose a new folder (bundles are never overwritten)")
    sources = {RFS: run_dir / "rfs" / "models", DM: run_dir / "dm" / "models"}
    for name, src in sources.items():
        if not (src / "model.ts").is_file():
            raise FileNotFoundError(f"{src / 'model.ts'} missing: the run's {name} stage has not finished")
    fold_dir = seg_fold_dir(run_dir, fold)
    staging = out.with_name(out.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)  # a leftover of an interrupted export
    staging.mkdir(parents=True)
    for name in (SEG, RFS, DM):
        _copy_bundle(name, staging / name)
    export_fold(fold_dir, staging / SEG)
    for name, src in sources.items():
        shutil.copytree(src, staging / name / "models", dirs_exist_ok=True)
    staging.rename(out)
    return {name: out / name for name in (SEG, RFS, DM)}


def main(args: argparse.Namespace) -> int:
    import sys

    try:
        made = export_bundles(args.run_dir, args.bundles_dir, args.fold)
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for name, path in made.items():
        print(f"{name}: {path}")
    return 0
