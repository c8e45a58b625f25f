"""The whole shipped RFS model as one TorchScript-scriptable module (``models/model.ts``).

:class:`RfsEnsemble` holds everything the Python inference (:func:`survival_head.rfs.workflows.ensemble_risk`)
uses, as parameters and buffers of one ``nn.Module``:

* the K fold networks (:class:`~survival_head.rfs.network.FusedFeatureExtractor`);
* each fold's clinical standardisation (Age median / mean / scale, and which codes the fold's encoder saw:
  a code never seen in a fold's training rows is moved to that fold's ``Unknown`` slot);
* each fold's ridge-Cox model on the 128-d fused features (mean, scale, coefficients);
* the fold normalisation (mean, std of each fold's training risk) and the ensemble weights.

``forward(image (B, 2, S, S, S), clinical (B, F)) -> risk (B, 1)`` float32, higher = earlier relapse.
``clinical`` is the *raw canonical* vector of :func:`raw_clinical_vector` (fold-independent): column 0 Age
in years (NaN = missing), then one-hot blocks in the canonical layout of
:func:`survival_head.rfs.clinical.canonical_feature_names` (missing / invalid codes -> ``Unknown``). F = 26 for
``clinical_set="paper+hpv"``, 23 for ``"paper"``. The risk tail (Cox, normalisation, weights) runs in float64.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from survival_head.features.clinical import UNKNOWN, ClinicalEncoder, _code_key, _numeric
from survival_head.rfs.clinical import DEFAULT_CLINICAL_SET, canonical_feature_names, clinical_columns
from survival_head.rfs.network import MODES, FusedFeatureExtractor

log = logging.getLogger(__name__)


class RfsEnsemble(nn.Module):
    """K-fold RFS ensemble, raw clinical vector in, ensemble risk out (see module docstring).

    Parameters
    ----------
    n_folds : number K of fold models.
    clinical_set : ``"paper"`` or ``"paper+hpv"``; fixes the clinical width F.
    mode : ``"fusion"``, ``"image"`` or ``"clinical"`` (must equal the trained networks' mode).
    fused_dim : width of the fused features the ridge-Cox models read (128).
    """

    def __init__(self, n_folds: int = 5, clinical_set: str = DEFAULT_CLINICAL_SET, mode: str = "fusion",
                 fused_dim: int = 128):
        super().__init__()
        numeric, categorical = clinical_columns(clinical_set)
        names = canonical_feature_names(numeric, categorical)
        self.clinical_set = clinical_set
        self.n_clinical = len(names)
        self.n_numeric = len(numeric)
        self.use_image = mode != "clinical"
        k, n_num, n_cat = int(n_folds), len(numeric), len(names) - len(numeric)
        self.folds = nn.ModuleList([FusedFeatureExtractor(len(names), mode=mode) for _ in range(k)])
        self.register_buffer("mode_id", torch.tensor(MODES.index(mode)))
        self.register_buffer("shared_backbone", torch.tensor(False))
        self.register_buffer("age_median", torch.zeros(k, n_num, dtype=torch.float64))
        self.register_buffer("age_mean", torch.zeros(k, n_num, dtype=torch.float64))
        self.register_buffer("age_scale", torch.ones(k, n_num, dtype=torch.float64))
        self.register_buffer("category_map", torch.eye(n_cat).repeat(k, 1, 1))  # (K, C, C) raw -> fold slots
        self.register_buffer("cox_mean", torch.zeros(k, fused_dim, dtype=torch.float64))
        self.register_buffer("cox_scale", torch.ones(k, fused_dim, dtype=torch.float64))
        self.register_buffer("cox_coef", torch.zeros(k, fused_dim, dtype=torch.float64))
        self.register_buffer("fold_mean", torch.zeros(k, dtype=torch.float64))
        self.register_buffer("fold_std", torch.ones(k, dtype=torch.float64))
        self.register_buffer("weights", torch.full((k,), 1.0 / max(k, 1), dtype=torch.float64))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "mode_id"
        if key in state_dict and int(state_dict[key]) != int(self.mode_id):
            raise ValueError(f"weights are of a {MODES[int(state_dict[key])]!r} model, network_def builds "
                             f"{MODES[int(self.mode_id)]!r}: set 'mode' in the config to the trained mode")
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.jit.export
    def encode_clinical(self, clinical: torch.Tensor, k: int) -> torch.Tensor:
        """Raw canonical (B, F) -> fold ``k``'s encoded clinical vector (B, F) float32."""
        n = self.n_numeric
        age = clinical[:, :n].double()
        age = torch.where(torch.isnan(age), self.age_median[k].expand_as(age), age)
        z = (age - self.age_mean[k]) / self.age_scale[k]
        cat = clinical[:, n:].float() @ self.category_map[k]
        return torch.cat([z.float(), cat], dim=1)

    @torch.jit.export
    def fold_risks(self, image: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """(B, 2, S, S, S), raw clinical (B, F) -> raw ridge-Cox risk of every fold (B, K) float64."""
        b = image.shape[0]
        shared = torch.zeros(b, 512, dtype=image.dtype, device=image.device)
        if self.use_image and bool(self.shared_backbone):
            shared = self.folds[0].backbone(image)
        out = []
        for k, net in enumerate(self.folds):
            img = torch.zeros(b, 512, dtype=image.dtype, device=image.device)
            if self.use_image:
                img = shared if bool(self.shared_backbone) else net.backbone(image)
            fused = net.fuse(img, self.encode_clinical(clinical, k)).double()
            out.append(((fused - self.cox_mean[k]) / self.cox_scale[k]) @ self.cox_coef[k])
        return torch.stack(out, dim=1)

    def forward(self, image: torch.Tensor, clinical: torch.Tensor) -> torch.Tensor:
        """(B, 2, S, S, S) float32, raw clinical (B, F) -> ensemble risk (B, 1) float32."""
        z = (self.fold_risks(image, clinical) - self.fold_mean) / self.fold_std
        return (z @ self.weights)[:, None].float()


# ---------------------------------------------------------------------------- raw clinical vector


def raw_clinical_vector(row: pd.Series | dict | None, clinical_set: str = DEFAULT_CLINICAL_SET) -> np.ndarray:
    """One clinical CSV row -> raw canonical vector (F,) float32 (Age in years, NaN = missing; one-hot)."""
    numeric, categorical = clinical_columns(clinical_set)
    frame = pd.DataFrame([dict(row) if row is not None else {}])
    out = [float(_numeric(frame, c)[0]) for c in numeric]
    out = [v if np.isfinite(v) else float("nan") for v in out]
    from hnc_core import schema

    for col in categorical:
        codes = sorted(str(c) for c in schema.CATEGORICAL_CODES.get(col, set()))
        key = _code_key(frame[col].iloc[0]) if col in frame.columns else ""
        block = np.zeros(len(codes) + 1, np.float32)
        block[codes.index(key) if key in codes else len(codes)] = 1.0
        out.extend(block.tolist())
    return np.asarray(out, np.float32)


def _category_map(enc: ClinicalEncoder) -> np.ndarray:
    """(C, C) 0/1 matrix: raw canonical one-hot slot -> slot the fold encoder puts that code in."""
    from hnc_core import schema

    cols = []
    for col in enc.categorical:
        codes = sorted(str(c) for c in schema.CATEGORICAL_CODES.get(col, set()))
        cols.append((col, codes))
    n = sum(len(c) + 1 for _, c in cols)
    m = np.zeros((n, n), np.float32)
    off = 0
    for col, codes in cols:
        seen = enc.categories_[col]
        unknown = off + len(codes)
        for j, code in enumerate(codes + [UNKNOWN]):
            m[off + j, off + j if (code in seen and code != UNKNOWN) else unknown] = 1.0
        off += len(codes) + 1
    return m


# ------------------------------------------------------------------------------------- building


def build_rfs_ensemble(models_dir: str | Path, manifest: dict | None = None) -> RfsEnsemble:
    """The trained K-fold ensemble of ``models_dir`` (manifest + fold files, sha256-checked) as one module."""
    from survival_head.rfs.ensemble import RiskEnsemble
    from survival_head.rfs.workflows import _same_state, load_fold, load_manifest

    models_dir = Path(models_dir)
    manifest = manifest or load_manifest(models_dir)
    model = RfsEnsemble(len(manifest["folds"]), manifest["clinical_set"], manifest["mode"])
    if model.n_clinical != manifest["n_clinical"]:
        raise ValueError(f"manifest n_clinical {manifest['n_clinical']} != {model.n_clinical} of "
                         f"clinical_set {manifest['clinical_set']!r}")
    ens = RiskEnsemble.from_dict(manifest["ensemble"])
    backbones = []
    with torch.no_grad():
        for k, info in enumerate(manifest["folds"]):
            net, enc, cox = load_fold(models_dir, info, manifest)
            model.folds[k].load_state_dict(net.state_dict())
            for j, col in enumerate(enc.numeric):
                model.age_median[k, j] = enc.medians_[col]
                model.age_mean[k, j] = enc.means_[col]
                model.age_scale[k, j] = enc.scales_[col]
            model.category_map[k] = torch.from_numpy(_category_map(enc))
            model.cox_mean[k] = torch.from_numpy(cox.mean_)
            model.cox_scale[k] = torch.from_numpy(cox.scale_)
            model.cox_coef[k] = torch.from_numpy(cox.coef_)
            model.fold_mean[k], model.fold_std[k] = ens.folds[k].mean, ens.folds[k].std
            backbones.append(net.backbone.state_dict())
        model.weights.copy_(torch.from_numpy(ens.weights))
        model.shared_backbone.fill_(all(_same_state(backbones[0], b) for b in backbones[1:]))
    return model.eval()


def export_rfs_model(models_dir: str | Path, manifest: dict | None = None, meta: dict | None = None,
                     inference_config: dict | None = None) -> dict:
    """Write ``models_dir/model.pt`` (state dict of :class:`RfsEnsemble`) and ``model.ts`` (scripted, with
    ``metadata.json`` / ``inference.json`` embedded as extra files like ``monai.bundle ckpt_export``).

    ``meta``: bundle metadata to embed; its ``network_data_format`` is set to the trained model's exact
    image size and clinical width. Returns ``{"model.pt": sha256, "model.ts": sha256}``.
    """
    from survival_head.io.checkpoints import save_weights, sha256_file

    models_dir = Path(models_dir)
    model = build_rfs_ensemble(models_dir, manifest)
    manifest = manifest or json.loads((models_dir / "manifest.json").read_text())
    meta = with_trained_format(meta or {}, manifest["image_size"], model.n_clinical)
    sha = {"model.pt": save_weights(model.state_dict(), models_dir / "model.pt")}
    scripted = torch.jit.script(model)
    extra = {"metadata.json": json.dumps(meta).encode(), "inference.json": json.dumps(inference_config or {}).encode()}
    save_scripted(scripted, models_dir / "model.ts", extra)
    sha["model.ts"] = sha256_file(models_dir / "model.ts")
    return sha


def save_scripted(scripted: torch.jit.ScriptModule, path: str | Path, extra_files: dict[str, bytes]) -> None:
    """``torch.jit.save`` atomically, the archive's root folder named after ``path``'s stem (``model/``),
    which is where MONAI Deploy looks for ``extra/metadata.json``."""
    import os
    import tempfile

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        tmp_file = Path(tmp) / path.name
        torch.jit.save(scripted, str(tmp_file), _extra_files=extra_files)
        os.replace(tmp_file, path)


def clinical_set_for(n_clinical: int) -> str:
    """The clinical variable set whose canonical width is ``n_clinical`` (26 -> paper+hpv, 23 -> paper)."""
    from survival_head.rfs.clinical import CLINICAL_SETS, n_clinical_for

    for name in CLINICAL_SETS:
        if n_clinical_for(name) == int(n_clinical):
            return name
    raise ValueError(f"no clinical set has {n_clinical} inputs: "
                     + ", ".join(f"{n}={n_clinical_for(n)}" for n in CLINICAL_SETS))


def with_trained_format(meta: dict, image_size: int, n_clinical: int) -> dict:
    """Copy of ``meta`` whose ``network_data_format`` declares the trained image size and clinical width."""
    meta = json.loads(json.dumps(meta))
    inputs = meta.setdefault("network_data_format", {}).setdefault("inputs", {})
    inputs.setdefault("image", {})["spatial_shape"] = [int(image_size)] * 3
    inputs["image"]["num_channels"] = 2
    inputs.setdefault("clinical", {})["num_channels"] = int(n_clinical)
    inputs["clinical"]["spatial_shape"] = [int(n_clinical)]
    return meta


def format_mismatches(meta: dict, image_size: int, n_clinical: int) -> list[str]:
    """Differences between a metadata's declared inputs and the trained model (empty = consistent)."""
    inputs = meta.get("network_data_format", {}).get("inputs", {})
    got = {"image.num_channels": inputs.get("image", {}).get("num_channels"),
           "clinical.num_channels": inputs.get("clinical", {}).get("num_channels"),
           "image.spatial_shape": inputs.get("image", {}).get("spatial_shape")}
    want = {"image.num_channels": 2, "clinical.num_channels": n_clinical, "image.spatial_shape": [image_size] * 3}
    return [f"{k}: metadata declares {got[k]}, trained model has {want[k]}" for k in want if got[k] != want[k]]


def train_and_export(meta_file: str | Path | None = None, inference_file: str | Path | None = None,
                     **train_kwargs) -> dict:
    """:func:`~survival_head.rfs.workflows.train_folds`, then write ``model.pt`` / ``model.ts`` beside the
    fold files (rank 0 only under torchrun). The bundle metadata (``meta_file``) is checked against the
    trained model: a mismatch in channel counts or image size is logged, and the metadata embedded in
    ``model.ts`` (what MONAI Deploy reads) always carries the trained values. Returns the manifest, with
    ``export`` = sha256 of both files and ``format_mismatches``."""
    from survival_head.rfs.workflows import _is_writer, train_folds

    manifest = train_folds(**train_kwargs)
    if not _is_writer():
        return manifest
    meta = json.loads(Path(meta_file).read_text()) if meta_file and Path(meta_file).is_file() else {}
    config = json.loads(Path(inference_file).read_text()) if inference_file and Path(inference_file).is_file() else {}
    manifest["format_mismatches"] = format_mismatches(meta, manifest["image_size"], manifest["n_clinical"])
    own = meta_file is not None and Path(meta_file).resolve().parent.parent / "models" == \
        Path(train_kwargs["models_dir"]).resolve()
    for m in manifest["format_mismatches"]:
        log.warning("%s: %s (%s)", meta_file, m, "rewritten with the trained values" if own else
                    "model.ts embeds the trained values")
    if own and manifest["format_mismatches"]:  # the bundle trained its own models/: declare what it holds
        from hnc_core.io import write_json_atomic

        write_json_atomic(meta_file, with_trained_format(meta, manifest["image_size"], manifest["n_clinical"]))
    manifest["export"] = export_rfs_model(train_kwargs["models_dir"], manifest, meta, config)
    from hnc_core.io import write_json_atomic

    from survival_head.io.checkpoints import write_integrity
    from survival_head.rfs.workflows import MANIFEST, model_files

    write_json_atomic(Path(train_kwargs["models_dir"]) / MANIFEST, manifest)
    # the manifest changed (export hashes): re-hash what inference.json reads (model.ts, which ckpt_export
    # rebuilds, is covered by manifest["export"])
    write_integrity(train_kwargs["models_dir"], [MANIFEST, *model_files(manifest), "model.pt"])
    return manifest
