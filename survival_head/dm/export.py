"""The whole shipped DM model as one TorchScript-scriptable module (``models/model.ts``).

:class:`DMWholeModel` = image branch (encoder + projection) + radiomics standardisation of the selected
features (training medians for missing values, mean / scale, clip to [-10, 10]) + clinical encoding
(Age imputed with the training median and standardised; one-hot codes seen in training, others ->
``Unknown``) + the FC fusion head, ``forward(image, radiomics, clinical) -> P(DM)`` (B, 1) float32.

Inputs (``network_data_format``): ``image`` (B, C, S, S, S) crop (CT window, tumour, ring [, organs]);
``radiomics`` (B, k) raw pyradiomics values of the k selected features, in ``selected`` order, float64,
NaN = missing; ``clinical`` (B, 10) raw canonical vector of :func:`raw_clinical_vector` (Age years, NaN =
missing, then Gender / Tobacco / Alcohol one-hot over every HECKTOR code, each block ending in Unknown).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn

from survival_head.features.clinical import DM_CATEGORICAL, DM_NUMERIC, UNKNOWN, ClinicalEncoder

log = logging.getLogger(__name__)


def _canonical_codes(col: str) -> list[str]:
    from hnc_core import schema

    return sorted(str(c) for c in schema.CATEGORICAL_CODES.get(col, set()))


def n_raw_clinical() -> int:
    """Width of the raw canonical DM clinical vector (Age + one-hot blocks with Unknown) = 10."""
    return len(DM_NUMERIC) + sum(len(_canonical_codes(c)) + 1 for c in DM_CATEGORICAL)


def raw_clinical_vector(row) -> np.ndarray:
    """One clinical CSV row (dict / Series / None) -> raw canonical DM clinical vector (10,) float32."""
    import pandas as pd

    from survival_head.features.clinical import _code_key, _numeric

    frame = pd.DataFrame([dict(row) if row is not None else {}])
    out = [float(_numeric(frame, c)[0]) for c in DM_NUMERIC]
    for col in DM_CATEGORICAL:
        codes = _canonical_codes(col)
        key = _code_key(frame[col].iloc[0]) if col in frame.columns else ""
        block = [0.0] * (len(codes) + 1)
        block[codes.index(key) if key in codes else len(codes)] = 1.0
        out.extend(block)
    return np.asarray(out, np.float32)


class DMWholeModel(nn.Module):
    """Trained DM model, raw inputs in, probability out (see module docstring).

    Parameters
    ----------
    arch : architecture of the trained model (``model_meta.json``): ``in_channels``, ``n_radiomics``,
        ``n_clinical`` (encoder width), ``backbone``, ``feature_size``, ``window_size``, ``deep_dim``,
        ``hidden``, ``modalities``, ``image_size``.
    """

    __constants__ = ["use_image", "use_radiomics", "use_clinical"]  # dead branches pruned when scripted

    def __init__(self, arch: dict):
        super().__init__()
        from survival_head.dm.network import DMFusionNet

        mods = tuple(arch["modalities"])
        net = DMFusionNet(int(arch["in_channels"]), int(arch["n_radiomics"]), int(arch["n_clinical"]),
                               arch["backbone"], int(arch["feature_size"]), int(arch["deep_dim"]), int(arch["hidden"]),
                               0.0, "image" in mods, "radiomics" in mods, "clinical" in mods,
                               window_size=int(arch["window_size"]))
        self.use_image, self.use_radiomics, self.use_clinical = net.use_image, net.use_radiomics, net.use_clinical
        self.in_channels, self.image_size = int(arch["in_channels"]), int(arch["image_size"])
        # image branch = encoder + projection; the fusion head. (The auxiliary image-only head is not shipped.)
        self.image_branch = nn.Sequential(net.encoder, net.project) if net.use_image else nn.Identity()
        self.head = net.head
        k, n_cat_raw = int(arch["n_radiomics"]), n_raw_clinical() - len(DM_NUMERIC)
        n_cat_enc = int(arch["n_clinical"]) - len(DM_NUMERIC)
        self.register_buffer("rad_median", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("rad_mean", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("rad_scale", torch.ones(k, dtype=torch.float64))
        self.register_buffer("rad_standardize", torch.tensor(True))
        self.register_buffer("age_median", torch.zeros(len(DM_NUMERIC), dtype=torch.float64))
        self.register_buffer("age_mean", torch.zeros(len(DM_NUMERIC), dtype=torch.float64))
        self.register_buffer("age_scale", torch.ones(len(DM_NUMERIC), dtype=torch.float64))
        self.register_buffer("category_map", torch.zeros(n_cat_raw, max(n_cat_enc, 0)))
        self.register_buffer("threshold", torch.tensor(0.5, dtype=torch.float64))

    @torch.jit.export
    def encode_radiomics(self, radiomics: torch.Tensor) -> torch.Tensor:
        """Raw selected features (B, k) -> standardised (B, k) float32, as the training selector does."""
        r = radiomics.double()
        r = torch.where(torch.isfinite(r), r, self.rad_median.expand_as(r))
        if bool(self.rad_standardize):
            r = torch.clamp((r - self.rad_mean) / self.rad_scale, -10.0, 10.0)
        return r.float()

    @torch.jit.export
    def encode_clinical(self, clinical: torch.Tensor) -> torch.Tensor:
        """Raw canonical (B, 10) -> the training encoder's columns (B, n_clinical) float32."""
        n = self.age_median.shape[0]
        age = clinical[:, :n].double()
        age = torch.where(torch.isnan(age), self.age_median.expand_as(age), age)
        z = (age - self.age_mean) / self.age_scale
        return torch.cat([z.float(), clinical[:, n:].float() @ self.category_map], dim=1)

    def forward(self, image: torch.Tensor, radiomics: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S, S), (B, k), (B, 10) -> P(DM) (B, 1) float32."""
        parts: list[torch.Tensor] = []
        if self.use_image:
            parts.append(self.image_branch(image.float()))
        if self.use_radiomics:
            parts.append(self.encode_radiomics(radiomics))
        if self.use_clinical:
            parts.append(self.encode_clinical(clinical))
        return torch.sigmoid(self.head(torch.cat(parts, dim=1)))

    def __prepare_scriptable__(self) -> "DMWholeModel":
        """``torch.jit.script`` (and ``monai.bundle ckpt_export``) call this first: MONAI's Swin encoder uses
        ``torch.utils.checkpoint`` and cannot be scripted, so the single-input image branch is traced at the
        trained crop size (C, S, S, S); everything else (standardisation, encoding, head) is scripted."""
        import copy

        if not self.use_image or isinstance(self.image_branch, torch.jit.ScriptModule):
            return self
        out = copy.copy(self)
        out._modules = dict(self._modules)
        example = torch.zeros(1, self.in_channels, self.image_size, self.image_size, self.image_size)
        out._modules["image_branch"] = torch.jit.trace(self.image_branch.eval(), example)
        return out


def trained_architecture(model_dir: str | Path) -> dict:
    """Architecture dict of the trained model in ``model_dir/model_meta.json`` (see :class:`DMWholeModel`)."""
    from survival_head.io.checkpoints import WeightsError

    path = Path(model_dir) / "model_meta.json"
    if not path.is_file():
        raise WeightsError(f"model metadata not found: {path} (train the bundle first)")
    meta = json.loads(path.read_text())
    cfg = meta["config"]
    return {"in_channels": int(meta["in_channels"]), "n_radiomics": len(meta["selector"]["selected"]),
            "n_clinical": len(meta["clinical_encoder"]["feature_names"]), "backbone": cfg["backbone"],
            "feature_size": cfg["feature_size"], "window_size": cfg["window_size"], "deep_dim": cfg["deep_dim"],
            "hidden": cfg["hidden"], "modalities": list(meta["modalities"]), "image_size": cfg["image_size"]}


def _category_map(enc: ClinicalEncoder) -> np.ndarray:
    """(raw one-hot slots, encoder one-hot columns) 0/1: each canonical code -> the encoder's level."""
    rows, cols = [], []
    for col in enc.categorical:
        levels = enc.categories_[col]
        base = sum(len(enc.categories_[c]) for c in enc.categorical[:list(enc.categorical).index(col)])
        for code in _canonical_codes(col) + [UNKNOWN]:
            rows.append(base + (levels.index(code) if code in levels else len(levels) - 1))
        cols.append(len(levels))
    m = np.zeros((len(rows), sum(cols)), np.float32)
    m[np.arange(len(rows)), rows] = 1.0
    return m


def build_dm_model(model_dir: str | Path, sha256: str | None = None) -> DMWholeModel:
    """:func:`_build_dm_model`; a weights problem ends a bundle run with one ``error:`` line (exit 1)."""
    from survival_head.io.bundle_paths import guarded

    return guarded(_build_dm_model)(model_dir, sha256)


def _build_dm_model(model_dir: str | Path, sha256: str | None = None) -> DMWholeModel:
    """The trained model of ``model_dir`` (``model_meta.json`` + sha256-checked ``model.pt``) as one module."""
    from survival_head.dm.training import FittedDM

    fitted = FittedDM.load(model_dir, sha256)
    if list(fitted.encoder.numeric) != list(DM_NUMERIC) or list(fitted.encoder.categorical) != list(DM_CATEGORICAL):
        raise ValueError("DM clinical encoder columns differ from the canonical DM layout")
    model = DMWholeModel(trained_architecture(model_dir))
    sel, enc = fitted.selector, fitted.encoder
    with torch.no_grad():
        state = fitted.net.state_dict()
        if model.use_image:
            model.image_branch[0].load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
            model.image_branch[1].load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("project.")})
        model.head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
        model.rad_median.copy_(torch.as_tensor(np.asarray(sel.medians_, float)))
        if sel.standardize:
            model.rad_mean.copy_(torch.as_tensor(np.asarray(sel.means_, float)))
            model.rad_scale.copy_(torch.as_tensor(np.asarray(sel.scales_, float)))
        model.rad_standardize.fill_(bool(sel.standardize))
        for j, col in enumerate(enc.numeric):
            model.age_median[j], model.age_mean[j], model.age_scale[j] = (enc.medians_[col], enc.means_[col],
                                                                          enc.scales_[col])
        model.category_map.copy_(torch.from_numpy(_category_map(enc)))
        model.threshold.fill_(float(fitted.threshold))
    return model.eval()


def with_trained_format(meta: dict, arch: dict, image_size: int, selected: list[str]) -> dict:
    """Copy of ``meta`` whose ``network_data_format`` declares the trained channel counts and sizes."""
    meta = json.loads(json.dumps(meta))
    inputs = meta.setdefault("network_data_format", {}).setdefault("inputs", {})
    img = inputs.setdefault("image", {})
    img["num_channels"], img["spatial_shape"] = int(arch["in_channels"]), [int(image_size)] * 3
    rad = inputs.setdefault("radiomics", {})
    rad["num_channels"], rad["spatial_shape"] = len(selected), [len(selected)]
    rad["channel_def"] = {str(i): name for i, name in enumerate(selected)}
    cli = inputs.setdefault("clinical", {})
    cli["num_channels"], cli["spatial_shape"] = n_raw_clinical(), [n_raw_clinical()]
    return meta


def export_dm_model(model_dir: str | Path, meta_file: str | Path | None = None,
                    inference_file: str | Path | None = None) -> dict:
    """Write ``model_dir/model.ts`` (scripted :class:`DMWholeModel`, bundle metadata with the trained format
    and ``inference.json`` embedded). When ``meta_file`` belongs to the bundle whose ``models/`` is
    ``model_dir``, its ``network_data_format`` is rewritten with the trained values. Returns sha256s."""
    from hnc_core.io import write_json_atomic
    from survival_head.io.checkpoints import sha256_file
    from survival_head.rfs.export import save_scripted

    model_dir = Path(model_dir)
    model = build_dm_model(model_dir)
    info = json.loads((model_dir / "model_meta.json").read_text())
    meta = json.loads(Path(meta_file).read_text()) if meta_file and Path(meta_file).is_file() else {}
    config = json.loads(Path(inference_file).read_text()) if inference_file and Path(inference_file).is_file() else {}
    new = with_trained_format(meta, trained_architecture(model_dir), info["config"]["image_size"],
                              info["selector"]["selected"])
    if meta_file and Path(meta_file).resolve().parent.parent / "models" == model_dir.resolve() and new != meta:
        log.warning("%s: network_data_format rewritten with the trained channel counts / sizes", meta_file)
        write_json_atomic(meta_file, new)
    save_scripted(torch.jit.script(model), model_dir / "model.ts",
                  {"metadata.json": json.dumps(new).encode(), "inference.json": json.dumps(config).encode()})
    return {"model.ts": sha256_file(model_dir / "model.ts")}


class TrainWorkflow:
    """``train.json`` entry point: :func:`survival_head.dm.workflows.train`, then :func:`export_dm_model`."""

    def __init__(self, meta_file: str | Path | None = None, inference_file: str | Path | None = None, **kwargs):
        from survival_head.dm.workflows import TrainWorkflow as _Train

        self.meta_file, self.inference_file = meta_file, inference_file
        self.inner = _Train(**kwargs)

    def run(self) -> dict:
        result = self.inner.run()
        result["export"] = export_dm_model(result["model_dir"], self.meta_file, self.inference_file)
        return result


def main(argv: list[str] | None = None) -> int:
    """``python -m survival_head.dm.export BUNDLE``: (re)write ``BUNDLE/models/model.ts``, the whole model.

    What ``train.json`` runs after training. MONAI's ``ckpt_export`` with its defaults cannot do this: it loads
    ``models/model.pt`` (the fusion network's state dict that ``FittedDM`` reads) strictly into ``network_def``
    (the whole model), whose keys differ.
    """
    import argparse

    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    p.add_argument("bundle", help="DM bundle folder (configs/ + trained models/)")
    a = p.parse_args(argv)
    bundle = Path(a.bundle)
    print(json.dumps(export_dm_model(bundle / "models", bundle / "configs" / "metadata.json",
                                     bundle / "configs" / "inference.json")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
