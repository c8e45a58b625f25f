"""Where the app finds its three MONAI bundles, and what it records about them.

A bundle is a MONAI bundle directory (``configs/metadata.json``, ``configs/inference.json`` and
``models/model.ts``, or ``models/model.pt`` + the config's ``network``) served by MONAI Deploy's stock
``MonaiBundleInferenceOperator``, which loads a directory bundle in that order: the outcome bundles ship
TorchScript; the HecMamba segmentation bundle too (its export writes ``models/model.ts``).
Resolution, per bundle, first match wins:

1. ``HNC_SEG_BUNDLE`` / ``HNC_RFS_BUNDLE`` / ``HNC_DM_BUNDLE``: a bundle directory;
2. ``<MODELS>/<bundle folder name>`` where ``MODELS`` is the app's ``-m`` argument (MONAI Deploy's model
   path) or ``HNC_BUNDLES_DIR``;
3. the repository's ``bundles/<bundle folder name>`` (a source checkout with trained models).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from hnc_core.hashing import sha256_file

from .errors import StudyInputError

REPO_BUNDLES = Path(__file__).resolve().parents[2] / "bundles"


@dataclass(frozen=True)
class BundleSlot:
    key: str          # report key
    folder: str       # bundle folder name (an interface name, kept exactly)
    env: str          # environment variable pointing at one bundle directory
    what: str


SEG = BundleSlot("segmentation", "hecmamba_petct_segmentation", "HNC_SEG_BUNDLE", "HecMamba GTVp/GTVn segmentation")
RFS = BundleSlot("rfs", "hecktor_rfs_fusion", "HNC_RFS_BUNDLE", "RFS fusion risk")
DM = BundleSlot("dm", "hnscc_distant_metastasis", "HNC_DM_BUNDLE", "distant-metastasis probability")
SLOTS = (SEG, RFS, DM)


@dataclass(frozen=True)
class BundleInfo:
    slot: BundleSlot
    path: Path
    metadata: dict

    @property
    def model_file(self) -> Path:
        """The weights the stock operator loads: ``models/model.ts``, else ``models/model.pt``."""
        return model_file(self.path)

    @property
    def inputs(self) -> dict:
        return self.metadata["network_data_format"]["inputs"]

    @property
    def outputs(self) -> dict:
        return self.metadata["network_data_format"]["outputs"]

    def record(self) -> dict:
        """What report.json says about the model: name, version, the file served and its sha256
        (``model_ts_sha256`` as well when that file is ``model.ts``, the key of earlier reports)."""
        digest = sha256_file(self.model_file)
        rec = {"bundle": self.slot.folder, "name": self.metadata.get("name", self.slot.folder),
               "version": self.metadata.get("version"), "path": str(self.path),
               "model_file": f"models/{self.model_file.name}", "model_sha256": digest}
        if self.model_file.suffix == ".ts":
            rec["model_ts_sha256"] = digest
        return rec


def model_file(bundle: Path) -> Path:
    """``models/model.ts`` if present, else ``models/model.pt`` (MONAI Deploy's order for a bundle folder)."""
    ts = bundle / "models" / "model.ts"
    return ts if ts.is_file() else bundle / "models" / "model.pt"


def candidates(slot: BundleSlot, models_dir: str | os.PathLike | None) -> list[Path]:
    out = []
    if os.environ.get(slot.env):
        return [Path(os.environ[slot.env])]
    for base in (models_dir, os.environ.get("HNC_BUNDLES_DIR")):
        if base:
            out.append(Path(base) / slot.folder)
    out.append(REPO_BUNDLES / slot.folder)
    return out


def resolve(slot: BundleSlot, models_dir: str | os.PathLike | None = None) -> BundleInfo:
    """The first usable bundle for ``slot``; :class:`StudyInputError` naming every place looked at."""
    tried = []
    for path in candidates(slot, models_dir):
        meta_file, model = path / "configs" / "metadata.json", model_file(path)
        if not path.is_dir():
            tried.append(f"{path} (no such folder)")
        elif not (path / "configs" / "inference.json").is_file() or not meta_file.is_file():
            tried.append(f"{path} (no configs/metadata.json + configs/inference.json)")
        elif not model.is_file():
            tried.append(f"{path} (no models/model.ts or models/model.pt: train the bundle, or export it "
                         f"(ckpt_export; segmentation: python -m nnunet_plugins.bundle.export FOLD_DIR BUNDLE))")
        else:
            meta = json.loads(meta_file.read_text())
            if "network_data_format" not in meta:
                tried.append(f"{path} (metadata.json has no network_data_format)")
                continue
            return BundleInfo(slot, path.resolve(), meta)
    raise StudyInputError(f"no usable {slot.what} bundle ({slot.folder}); looked at: {'; '.join(tried)}. "
                          f"Set {slot.env}=<bundle dir> or pass -m <folder holding {slot.folder}/>")


def enabled_slots() -> tuple[BundleSlot, ...]:
    """Models to run: ``HNC_CLINIC_MODELS`` (comma list of segmentation, rfs, dm; default all three).

    Segmentation always runs (the DICOM SEG and the DM mask come from it).
    """
    raw = os.environ.get("HNC_CLINIC_MODELS", "segmentation,rfs,dm")
    keys = {k.strip() for k in raw.split(",") if k.strip()}
    unknown = keys - {s.key for s in SLOTS}
    if unknown:
        raise StudyInputError(f"HNC_CLINIC_MODELS={raw!r}: unknown model(s) {sorted(unknown)}; "
                              f"choose from {[s.key for s in SLOTS]}")
    return tuple(s for s in SLOTS if s.key in keys or s is SEG)


def resolve_all(models_dir: str | os.PathLike | None = None) -> dict[str, BundleInfo]:
    """Every enabled bundle, resolved (see :func:`enabled_slots`)."""
    return {s.key: resolve(s, models_dir) for s in enabled_slots()}
