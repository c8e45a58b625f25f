"""MONAI dict transforms of the DM bundle's ``preprocessing`` (declared inputs ``image``, ``radiomics``, ``clinical``).

Two entry points feed them:

* ``monai.bundle run inference.json``: ``image`` = ``[ct_path, mask_path]``, ``radiomics`` = the patient's full
  pyradiomics row (dict, from the cohort cache), ``clinical`` = the CSV row (dict);
* MONAI Deploy's ``MonaiBundleInferenceOperator`` (it strips ``LoadImage*``): ``image`` = (2, X, Y, Z) MetaTensor
  (CT HU, tumour label on the CT grid) with its affine; ``radiomics`` = the k raw selected values (tensor) or an
  empty tensor, in which case they are extracted here with pyradiomics from the image; ``clinical`` = the raw
  canonical vector (tensor).
"""

from __future__ import annotations

from typing import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform


def regions_from_images(patient_id: str, ct_img, label_img, include_nodes: bool = True, ring_mm: float = 8.0):
    """CT + label SimpleITK images (same grid) -> :class:`survival_head.dm.regions.Regions` (body, tumour, ring)."""
    import SimpleITK as sitk

    from survival_head.dm.regions import RegionError, Regions, body_mask, peritumoral_ring, tumour_from_label

    ct = sitk.GetArrayFromImage(ct_img).astype(np.float32)
    label = np.rint(sitk.GetArrayFromImage(label_img)).astype(np.int16)
    tumour = tumour_from_label(label, include_nodes)
    if not tumour.any():
        raise RegionError(f"[{patient_id}] tumour mask holds no {'GTVp or GTVn' if include_nodes else 'GTVp'} voxels")
    ring = peritumoral_ring(tumour, body_mask(ct), ct_img.GetSpacing(), ring_mm, ct=ct)  # tissue only, as in training
    return Regions(patient_id, ct, tumour, ring, body_mask(ct), ct_img.GetSpacing(), ct_img.GetOrigin(),
                   ct_img.GetDirection(), {}, primary=label == 1)


class LoadImageRegionsd(MapTransform):
    """``image`` = (CT path, mask path) -> Regions (read, grid-checked, body / tumour / ring built)."""

    def __init__(self, keys: KeysCollection = ("image",), include_nodes: bool = True, ring_mm: float = 8.0):
        super().__init__(keys)
        self.include_nodes, self.ring_mm = include_nodes, ring_mm

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        from survival_head.dm.regions import load_regions

        d = dict(data)
        for key in self.key_iterator(d):
            ct, mask = d[key]
            d[key] = load_regions(str(d.get("id", "?")), ct, mask, include_nodes=self.include_nodes,
                                  ring_mm=self.ring_mm)
        return d


class DMCropd(MapTransform):
    """``image`` Regions or (2, X, Y, Z) [CT, label] MetaTensor -> (3, S, S, S) crop; keeps the Regions in
    ``regions`` for :class:`SelectedRadiomicsd`."""

    def __init__(self, keys: KeysCollection = ("image",), image_size: int = 64, fov_mm: float = 96.0,
                 include_nodes: bool = True, ring_mm: float = 8.0):
        super().__init__(keys)
        from survival_head.dm.transforms import TumourCrop

        self.crop = TumourCrop(image_size, fov_mm)
        self.include_nodes, self.ring_mm = include_nodes, ring_mm

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        from survival_head.dm.regions import Regions
        from survival_head.rfs.bundle_transforms import metatensor_to_sitk

        d = dict(data)
        for key in self.key_iterator(d):
            reg = d[key]
            if not isinstance(reg, Regions):
                if tuple(reg.shape)[0] != 2:
                    raise ValueError(f"patient {d.get('id', '?')}: {key} must have 2 channels (CT, tumour label on "
                                     f"the CT grid), got shape {tuple(reg.shape)}")
                reg = regions_from_images(str(d.get("id", "?")), metatensor_to_sitk(reg, 0), metatensor_to_sitk(reg, 1),
                                          self.include_nodes, self.ring_mm)
            d["regions"], d[key] = reg, self.crop(reg)
        return d


class SelectedRadiomicsd(MapTransform):
    """``radiomics`` -> (k,) float64 raw values of the ``selected`` features, in order (NaN = missing).

    A dict (full pyradiomics row) is indexed by name; a tensor / array of length k passes through; an empty
    tensor or ``None`` means "extract from ``regions`` with pyradiomics and ``params``" (MONAI Deploy).
    """

    def __init__(self, keys: KeysCollection = ("radiomics",), selected: Sequence[str] = (), params: dict | None = None):
        super().__init__(keys)
        self.selected, self.params = list(selected), params
        self._extractor = None

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            v = d[key]
            if v is None or (isinstance(v, (torch.Tensor, np.ndarray)) and np.asarray(v).size == 0):
                from survival_head.radiomics.extract import extract_patient, make_extractor

                self._extractor = self._extractor or make_extractor(self.params)
                v = extract_patient(d["regions"], self.params, self._extractor)
            if isinstance(v, Mapping):
                missing = [n for n in self.selected if n not in v]
                if missing:
                    raise KeyError(f"patient {d.get('id', '?')}: radiomics lack selected features {missing[:3]}")
                v = [float(v[n]) if v[n] is not None else float("nan") for n in self.selected]
            out = torch.as_tensor(np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v, float)).reshape(-1)
            if out.numel() != len(self.selected):
                raise ValueError(f"patient {d.get('id', '?')}: {out.numel()} radiomics values, model needs "
                                 f"{len(self.selected)}")
            d[key] = out.double()
        d.pop("regions", None)
        return d


class DMRawClinicald(MapTransform):
    """``clinical`` CSV row (dict / None) -> raw canonical (10,) float32 tensor; a tensor of 10 passes through."""

    def __call__(self, data: Mapping[Hashable, object]) -> dict:
        from survival_head.dm.export import n_raw_clinical, raw_clinical_vector

        d = dict(data)
        for key in self.key_iterator(d):
            v = d[key]
            out = torch.as_tensor(np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v, np.float32)).reshape(-1) \
                if isinstance(v, (torch.Tensor, np.ndarray)) else torch.from_numpy(raw_clinical_vector(v))
            if out.numel() != n_raw_clinical():
                raise ValueError(f"patient {d.get('id', '?')}: clinical vector has {out.numel()} values, "
                                 f"needs {n_raw_clinical()}")
            d[key] = out
        return d
