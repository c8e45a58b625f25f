"""Bundle I/O: the cases of an nnU-Net image folder, and the atomic NIfTI label-map writer.

Input layout = what ``nnUNetv2_predict -i`` reads (``hnc-petct nnunet-convert`` writes it): ``CASE_0000.nii.gz``
(CT, HU) and ``CASE_0001.nii.gz`` (PET SUV resampled onto the CT grid) per case. Output = what it writes:
``OUT/CASE.nii.gz``, uint8 labels (0 background, 1 GTVp, 2 GTVn) on the CT grid.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Transform

from hnc_core.guards import NothingPredicted, bundle_entry, check_output_dir, check_output_file
from hnc_core.io import write_image_atomic, write_json_atomic

log = logging.getLogger(__name__)

__all__ = ["CaseFolder", "case_folder", "AtomicSaveImage", "AtomicSaveImaged", "AttachInputMetad", "case_id_of",
           "trained_spacing"]

_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<ch>\d{4})\.nii(\.gz)?$")


def trained_spacing(models_dir: str | Path) -> list[float]:
    """Voxel spacing (mm) the exported fold was trained at, in MONAI's array axes (x, y, z): the plans'
    configuration spacing (nnU-Net's transposed (z, y, x) axes) put back in image order and reversed."""
    import json

    from .network import load_nnunet_checkpoint

    models_dir = Path(models_dir)
    plans = json.loads((models_dir / "plans.json").read_text())
    conf = load_nnunet_checkpoint(models_dir / "nnunet_checkpoint.pth")["init_args"]["configuration"]
    spacing = plans["configurations"][conf]["spacing"]
    backward = plans.get("transpose_backward", [0, 1, 2])
    zyx = [float(spacing[i]) for i in backward]
    return zyx[::-1]


class AttachInputMetad(MapTransform):
    """Give ``d[key]`` (a model output on the preprocessed grid, plain tensor or ``MetaTensor``) the metadata and
    applied operations of ``d[ref_key]``, so MONAI's ``Invertd`` can take it back to the input grid. TorchScript
    models (``models/model.ts`` under MONAI Deploy) return plain tensors."""

    def __init__(self, keys: KeysCollection, ref_key: str = "image", allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        from copy import deepcopy

        from monai.data import MetaTensor

        d = dict(data)
        ref = d[self.ref_key]
        for key in self.key_iterator(d):
            value = d[key].as_tensor() if isinstance(d[key], MetaTensor) else torch.as_tensor(d[key])
            if isinstance(ref, MetaTensor):
                value = MetaTensor(value, meta=deepcopy(ref.meta), applied_operations=deepcopy(ref.applied_operations))
            d[key] = value
        return d


def case_id_of(path: str | Path) -> str:
    """``.../CASE_0000.nii.gz`` -> ``CASE``."""
    m = _CHANNEL.match(Path(path).name)
    if not m:
        raise ValueError(f"{path}: not an nnU-Net channel file (CASE_XXXX.nii.gz)")
    return m["case"]


class CaseFolder:
    """The cases of ``dataset_dir`` (nnU-Net image folder) with ``n_channels`` channel files each.

    ``items``: ``[{"image": [CASE_0000, CASE_0001, ...], "case_id": CASE}]``, sorted; ``failures``: one
    ``{"case", "file", "error"}`` per case that cannot be read (the others still run).
    """

    def __init__(self, dataset_dir: str | Path, n_channels: int = 2) -> None:
        root = Path(dataset_dir)
        if not root.is_dir():
            raise NothingPredicted(f"input folder {root} does not exist")
        files: dict[str, dict[int, Path]] = {}
        for f in sorted(root.iterdir()):
            m = _CHANNEL.match(f.name)
            if m:
                files.setdefault(m["case"], {})[int(m["ch"])] = f
        self.items, self.failures = [], []
        for case, chans in sorted(files.items()):
            need = [root / f"{case}_{c:04d}.nii.gz" for c in range(n_channels)]
            bad = [p for c, p in enumerate(need) if c not in chans]
            bad += [p for c, p in chans.items() if c < n_channels and (not p.is_file() or p.stat().st_size == 0)]
            extra = sorted(c for c in chans if c >= n_channels)
            if bad or extra:
                err = (f"missing or empty channel file {bad[0].name}" if bad else
                       f"channel {extra[0]:04d} beyond the {n_channels} the model takes (CT, PET)")
                log.error("case %s skipped: %s", case, err)
                self.failures.append({"case": case, "file": str(bad[0] if bad else chans[extra[0]]), "error": err})
                continue
            self.items.append({"image": [str(chans[c]) for c in range(n_channels)], "case_id": case})
        if not self.items and not self.failures:
            raise NothingPredicted(f"no CASE_0000.nii.gz ... CASE_{n_channels - 1:04d}.nii.gz files in {root}")

    def finish(self, output_dir: str | Path) -> None:
        """After the run: ``failures.json`` in ``output_dir`` if any case was skipped; one ``error:`` line and
        exit status 1 if none ran."""
        bundle_entry(self._finish)(output_dir)

    def _finish(self, output_dir: str | Path) -> None:
        if self.failures:
            write_json_atomic(Path(output_dir) / "failures.json", self.failures)
        if not self.items:
            raise NothingPredicted(f"no case could be predicted; see {Path(output_dir) / 'failures.json'}")


def case_folder(dataset_dir: str | Path, n_channels: int = 2) -> CaseFolder:
    """:class:`CaseFolder`; a missing or empty input folder ends the bundle run with one ``error:`` line."""
    return bundle_entry(CaseFolder)(dataset_dir, n_channels)


class AtomicSaveImage(Transform):
    """(1, W, H, D) label map -> ``output_dir/CASE.nii.gz`` (uint8) on the grid of ``reference`` (the CT file).

    Written atomically (a reader never sees half a file); never inside ``protected_dirs`` (the input folder).
    """

    def __init__(self, output_dir: str | Path, protected_dirs: tuple = (), dtype=np.uint8) -> None:
        self.output_dir = check_output_dir(output_dir, protected_dirs=protected_dirs)
        self.protected_dirs, self.dtype = tuple(protected_dirs), dtype

    def __call__(self, pred: torch.Tensor, reference: str | Path) -> Path:
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(reference))
        reader.ReadImageInformation()
        arr = np.asarray(pred.detach().cpu() if isinstance(pred, torch.Tensor) else pred)
        arr = arr[0] if arr.ndim == 4 else arr
        if tuple(arr.shape) != tuple(reader.GetSize()):
            raise ValueError(f"label map {arr.shape} is not on the grid of {reference} {reader.GetSize()}")
        img = sitk.GetImageFromArray(np.ascontiguousarray(arr.transpose(2, 1, 0)).astype(self.dtype))
        img.SetSpacing(reader.GetSpacing())
        img.SetOrigin(reader.GetOrigin())
        img.SetDirection(reader.GetDirection())
        out = check_output_file(self.output_dir / f"{case_id_of(reference)}.nii.gz",
                                protected_dirs=self.protected_dirs)
        write_image_atomic(img, out)
        return out


class AtomicSaveImaged(MapTransform):
    """Dict wrapper of :class:`AtomicSaveImage`: writes ``d[key]``; the reference grid is the first file of
    ``d[ref_key]``'s ``filename_or_obj`` (the CT). MONAI Deploy's bundle operator drops it (``SaveImage*``)."""

    def __init__(self, keys: KeysCollection, output_dir: str | Path, ref_key: str = "image",
                 protected_dirs: tuple = (), allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.saver = AtomicSaveImage(output_dir, protected_dirs)
        self.ref_key = ref_key

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict:
        d = dict(data)
        ref = d[self.ref_key].meta["filename_or_obj"]
        ref = ref[0] if isinstance(ref, (list, tuple)) else ref
        for key in self.key_iterator(d):
            d[f"{key}_file"] = str(self.saver(d[key], ref))
        return d
