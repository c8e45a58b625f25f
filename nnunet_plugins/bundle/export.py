"""A trained nnU-Net fold -> the bundle's ``models/``.

    python -m nnunet_plugins.bundle.export RESULTS/Dataset501_HECKTOR/HecMambaTrainer__nnUNetPlans__3d_fullres/fold_0 \\
        bundles/hecmamba_petct_segmentation

(or ``python -m monai.bundle run --config_file BUNDLE/configs/export.json --fold_dir FOLD_DIR``). MONAI's own
``convert_nnunet_to_monai_bundle`` writes ``models/nnunet_checkpoint.pth`` (trainer name, init args, mirroring
axes), ``models/plans.json`` and ``models/dataset.json``; its per-fold ``fold_N/model.pt`` weights become
``models/model.pt`` in :class:`~nnunet_plugins.bundle.network.HecMambaBundleNet`'s key layout (the file MONAI's
``CheckpointLoader`` loads), ``models/model.ts`` is the whole-case inference as TorchScript
(:mod:`~nnunet_plugins.bundle.torchscript`; what MONAI Deploy's bundle operator loads, with ``metadata.json`` and
``inference.json`` embedded), and ``models/manifest.json`` records sha256 of each file and where it came from.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from hnc_core.hashing import sha256_file
from hnc_core.io import atomic_path, write_json_atomic

from .network import load_nnunet_checkpoint, nnunet_safe_globals

__all__ = ["export_fold", "MODEL_FILES"]

MODEL_FILES = ("model.pt", "model.ts", "nnunet_checkpoint.pth", "plans.json", "dataset.json")


@contextlib.contextmanager
def _env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _parse_fold_dir(fold_dir: Path) -> dict:
    """``RESULTS/<Dataset>/<trainer>__<plans>__<configuration>/fold_<f>`` -> its parts."""
    model_dir, dataset_dir = fold_dir.parent, fold_dir.parent.parent
    parts = model_dir.name.split("__")
    if not fold_dir.name.startswith("fold_") or len(parts) != 3:
        raise ValueError(f"{fold_dir}: not an nnU-Net results fold (RESULTS/DatasetXXX_Name/"
                         f"TRAINER__PLANS__CONFIGURATION/fold_N)")
    fold = fold_dir.name[len("fold_"):]
    return {"results": dataset_dir.parent, "dataset": dataset_dir.name, "trainer": parts[0], "plans": parts[1],
            "configuration": parts[2], "fold": int(fold) if fold.isdigit() else fold}


def export_fold(fold_dir: str | os.PathLike, bundle_dir: str | os.PathLike, checkpoint: str = "checkpoint_final.pth",
                use_mirroring: bool = True, tile_step_size: float = 0.5) -> dict:
    """Write ``bundle_dir/models/{model.pt, model.ts, nnunet_checkpoint.pth, plans.json, dataset.json,
    manifest.json}``.

    ``fold_dir``: a finished nnU-Net fold (``checkpoint_final.pth`` and ``checkpoint_best.pth``; the weights
    exported are ``checkpoint``'s). ``use_mirroring`` / ``tile_step_size``: the test-time mirroring and window
    step baked into ``model.ts`` (nnU-Net's defaults; the Python route takes them from ``inference.json``).
    Files are built in a temporary folder and moved in one by one, each atomically; returns the manifest.
    """
    from monai.apps.nnunet.nnunet_bundle import convert_nnunet_to_monai_bundle

    if not str(fold_dir):
        raise ValueError("no fold given: pass --fold_dir RESULTS/DatasetXXX_Name/TRAINER__PLANS__CONFIGURATION/fold_N")
    fold_dir = Path(fold_dir).resolve()
    info = _parse_fold_dir(fold_dir)
    for name in ("checkpoint_final.pth", "checkpoint_best.pth", checkpoint):
        if not (fold_dir / name).is_file():
            raise FileNotFoundError(f"{fold_dir / name} missing: train the fold to the end first")
    models = Path(bundle_dir) / "models"
    models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models, prefix=".export.") as tmp:
        (Path(tmp) / "models").mkdir()
        # MONAI loads nnU-Net's checkpoints weights_only=True; they hold numpy scalars/dtypes besides tensors
        with _env(nnUNet_results=str(info["results"])), torch.serialization.safe_globals(nnunet_safe_globals()):
            convert_nnunet_to_monai_bundle(
                nnunet_config={"dataset_name_or_id": info["dataset"], "nnunet_trainer": info["trainer"],
                               "nnunet_plans": info["plans"], "nnunet_configuration": info["configuration"]},
                bundle_root_folder=tmp, fold=info["fold"])
        weights = load_nnunet_checkpoint(fold_dir / checkpoint)["network_weights"]
        torch.save({f"network.{k}": v for k, v in weights.items()}, Path(tmp) / "models" / "model.pt")
        settings = _write_model_ts(Path(tmp) / "models", Path(bundle_dir) / "configs", use_mirroring, tile_step_size)
        for name in MODEL_FILES:
            with atomic_path(models / name) as dst:
                shutil.copyfile(Path(tmp) / "models" / name, dst)
    manifest = {"source_fold": str(fold_dir), "checkpoint": checkpoint, **{k: info[k] for k in
                ("dataset", "trainer", "plans", "configuration", "fold")}, "model_ts": settings,
                "files": {name: sha256_file(models / name) for name in MODEL_FILES}}
    write_json_atomic(models / "manifest.json", manifest)
    return manifest


def _write_model_ts(models: Path, configs: Path, use_mirroring: bool, tile_step_size: float) -> dict:
    """``models/model.ts`` from the fold files already in ``models`` (see :func:`save_model_ts`)."""
    from .network import HecMambaBundleNet
    from .torchscript import save_model_ts

    net = HecMambaBundleNet(models, verify=False)
    net.load_state_dict(torch.load(models / "model.pt", map_location="cpu", weights_only=True), strict=True)
    extra = {name: (configs / name).read_text() for name in ("metadata.json", "inference.json")
             if (configs / name).is_file()}
    return save_model_ts(net, models / "model.ts", extra_files=extra, use_mirroring=use_mirroring,
                         tile_step_size=tile_step_size)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("fold_dir", help="nnU-Net results fold: RESULTS/DatasetXXX/TRAINER__PLANS__CONF/fold_N")
    p.add_argument("bundle_dir", help="bundle folder (hecmamba_petct_segmentation); writes its models/")
    p.add_argument("--checkpoint", default="checkpoint_final.pth", help="checkpoint of the fold to export")
    p.add_argument("--disable-tta", action="store_true", help="model.ts without test-time mirroring "
                                                                "(nnUNetv2_predict --disable_tta)")
    p.add_argument("--step-size", type=float, default=0.5, help="model.ts sliding-window step (fraction of patch)")
    a = p.parse_args(argv)
    print(json.dumps(export_fold(a.fold_dir, a.bundle_dir, a.checkpoint, use_mirroring=not a.disable_tta,
                                 tile_step_size=a.step_size), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
