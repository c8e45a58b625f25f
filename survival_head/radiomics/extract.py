"""Per-patient pyradiomics extraction for the tumour and peritumoral regions.

Feature names are ``<region>__<image type>_<class>_<feature>``, e.g. ``tumour__original_glcm_Contrast``,
``peritumoral__wavelet-LLH_firstorder_Mean``. Values are float; pyradiomics diagnostics are dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import resources
from pathlib import Path

import numpy as np
import yaml

REGIONS = ("tumour", "peritumoral")
SEP = "__"
FULL_PARAMS = "params.yaml"
FAST_PARAMS = "params_fast.yaml"
# Features per enabled class on one image (pyradiomics >= 3, default feature sets).
CLASS_SIZES = {"shape": 14, "firstorder": 18, "glcm": 24, "glrlm": 16, "glszm": 16, "gldm": 14, "ngtdm": 5}


def params_path(name_or_path: str | Path | None = None) -> Path:
    """Resolve ``None`` (full config), ``"fast"``, a shipped file name, or a user YAML path."""
    if name_or_path is None:
        name_or_path = FULL_PARAMS
    if str(name_or_path) == "fast":
        name_or_path = FAST_PARAMS
    p = Path(name_or_path)
    if p.is_file():
        return p.resolve()
    shipped = resources.files("survival_head.radiomics") / str(name_or_path)
    if shipped.is_file():
        return Path(str(shipped))
    raise FileNotFoundError(f"radiomics params file not found: {name_or_path}")


def load_params(name_or_path: str | Path | None = None) -> dict:
    """The params YAML as a dict."""
    return yaml.safe_load(params_path(name_or_path).read_text())


def params_digest(params: dict) -> str:
    """Short stable hash of a params dict (part of the cache key)."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def expected_feature_count(params: dict) -> int:
    """Features per region implied by ``params``: shape once, the other classes per image."""
    classes = params.get("featureClass") or {}
    per_image = sum(CLASS_SIZES[c] for c in classes if c != "shape")
    n_images = 0
    for name, opts in (params.get("imageType") or {}).items():
        opts = opts or {}
        if name == "LoG":
            n_images += len(opts.get("sigma", []))
        elif name == "Wavelet":
            n_images += 8
        else:
            n_images += 1
    return n_images * per_image + (CLASS_SIZES["shape"] if "shape" in classes else 0)


def make_extractor(params: dict):
    """A configured ``RadiomicsFeatureExtractor`` (pyradiomics logging quietened to errors)."""
    import radiomics
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)
    return RadiomicsFeatureExtractor(params)


def extract_patient(regions, params: dict, extractor=None) -> dict[str, float]:
    """Features of both regions of one :class:`~survival_head.dm.regions.Regions`.

    Returns ``{name: value}`` with ``2 * expected_feature_count(params)`` entries.
    Raises ``ValueError`` naming the patient if a region is empty or pyradiomics fails.
    """
    extractor = extractor or make_extractor(params)
    ct = regions.to_sitk("ct")
    out: dict[str, float] = {}
    for region, attr in zip(REGIONS, ("tumour", "ring")):
        if not getattr(regions, attr).any():
            raise ValueError(f"[{regions.patient_id}] {region} region is empty")
        try:
            res = extractor.execute(ct, regions.to_sitk(attr), label=1)
        except Exception as exc:  # noqa: BLE001 - re-raised with the patient named
            raise ValueError(f"[{regions.patient_id}] pyradiomics failed on the {region} region: {exc}") from exc
        for k, v in res.items():
            if k.startswith("diagnostics_"):
                continue
            out[f"{region}{SEP}{k}"] = float(np.asarray(v))
    return out
