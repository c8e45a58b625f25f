"""Deterministic synthetic HECKTOR-layout PET/CT cohort with a known ground-truth risk model.

Each patient gets a head/neck phantom (body contour with a fat rim, airway, spine, mandible, skull,
brain with high FDG uptake at the top, a primary tumour GTVp and 0-3 nodes GTVn) drawn on a CT grid
of ~1x1x3 mm (HU, int16) and a PET grid of ~4 mm (SUV, float32) with a different origin, with noise
and partial-volume blur. Outcomes come from the documented model in :data:`TRUTH_MODEL`:

* RFS: Weibull proportional hazards ``h(t) = h0(t) * exp(eta)``,
  ``eta = sum(beta_k * x_k)`` over image features (log tumour volume, SUVpeak, number of nodes,
  peritumoral texture) and clinical ones (age, HPV, performance status, M1, surgery); event time
  ``T = scale * (-log U / exp(eta)) ** (1 / shape)``; censoring ``C = min(admin, loss)``;
  ``RFS = min(T, C)`` days, ``Relapse = T <= C``.
* Distant metastasis: ``P(DM) = sigmoid(alpha0 + sum(alpha_k * x_k))`` over image features and
  age, sex, smoking, alcohol, HPV; ``DM ~ Bernoulli(P)``.

``ground_truth.csv`` beside the data holds the true log-hazard, the DM probability and every latent
variable and random draw, so the written outcomes can be reproduced exactly and oracle C-index/AUC
computed. Clinical values are written with realistic missingness; the truth uses the latent values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

from hnc_core import schema
from hnc_core.io import write_csv_atomic, write_image_atomic, write_json_atomic

CENTERS = ["CHUM", "CHUP", "CHUV", "HGJ", "HMR", "MDA", "USZ"]

# Population constants used to standardise features inside the truth model (fixed, not sample stats).
TRUTH_MODEL: dict = {
    "standardise": {
        "log_volume_ml": {"mean": math.log(10.0), "sd": 0.75},
        "suv_peak": {"mean": 11.0, "sd": 4.0},
        "n_nodes": {"mean": 1.2, "sd": 1.0},
        "peritumoral_texture": {"mean": 0.5, "sd": 0.29},
        "age": {"mean": 62.0, "sd": 9.0},
    },
    "rfs": {
        "beta": {
            "log_volume_ml": 0.55, "suv_peak": 0.35, "n_nodes": 0.30, "peritumoral_texture": 0.45,
            "age": 0.25, "hpv": -0.70, "performance_status": 0.35, "m1": 1.0, "surgery": -0.35,
        },
        "weibull_shape": 1.2,
        "weibull_scale_days": 2600.0,
        "censoring": {"admin_uniform_days": [700.0, 2500.0], "loss_exponential_mean_days": 5000.0},
    },
    "dm": {
        "intercept": -1.9,
        "alpha": {
            "log_volume_ml": 0.55, "suv_peak": 0.25, "n_nodes": 0.45, "peritumoral_texture": 0.95,
            "age": 0.15, "male": 0.2, "tobacco": 0.45, "alcohol": 0.25, "hpv": -0.5,
        },
    },
    "missingness": {
        schema.AGE: 0.02, schema.GENDER: 0.01, schema.TOBACCO: 0.35, schema.ALCOHOL: 0.4,
        schema.PERFORMANCE: 0.2, schema.HPV: 0.3, schema.TREATMENT: 0.0, schema.M_STAGE: 0.0,
    },
}


@dataclass(frozen=True)
class GridSpec:
    """CT/PET voxel grids. Sizes are (x, y, z) voxels, spacings (x, y, z) mm."""

    ct_size: tuple[int, int, int]
    ct_spacing: tuple[float, float, float]
    pet_spacing: tuple[float, float, float]


GRIDS = {
    # ~1 MB CT per patient: 128 x 128 x 144 mm neck/head field of view.
    "small": GridSpec(ct_size=(128, 128, 48), ct_spacing=(1.0, 1.0, 3.0), pet_spacing=(4.0, 4.0, 4.0)),
    # Clinical size: 512 x 512 x 200 at 0.98 x 0.98 x 3 mm (~500 x 500 x 600 mm).
    "full": GridSpec(ct_size=(512, 512, 200), ct_spacing=(0.977, 0.977, 3.0), pet_spacing=(4.0, 4.0, 4.0)),
}


# ------------------------------------------------------------------------------------- clinical draws


def _draw_patients(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """Latent per-patient variables (complete, before missingness)."""
    hpv = rng.random(n) < 0.55
    age = np.clip(rng.normal(62, 9, n), 30, 90).round()
    male = rng.random(n) < 0.8
    tobacco = rng.random(n) < np.where(hpv, 0.4, 0.7)
    alcohol = rng.random(n) < 0.5
    ps = rng.choice([0, 1, 2, 3], size=n, p=[0.55, 0.35, 0.08, 0.02])
    m_stage = rng.choice(["M0", "M1", "Mx"], size=n, p=[0.92, 0.03, 0.05])
    surgery = rng.random(n) < 0.25
    volume = np.exp(rng.normal(math.log(10.0), 0.7, n)).clip(1.5, 60.0)  # mL, target of the drawn mask
    suv = np.clip(11.0 + 3.0 * (np.log(volume) - math.log(10.0)) / 0.7 + rng.normal(0, 2.8, n), 4.0, 25.0)
    n_nodes = np.array([rng.choice(4, p=[0.3, 0.3, 0.25, 0.15] if h else [0.45, 0.3, 0.15, 0.1]) for h in hpv])
    texture = rng.random(n)
    center = rng.choice(len(CENTERS), size=n)
    return pd.DataFrame({
        "center": center, "age": age, "male": male.astype(int), "tobacco": tobacco.astype(int),
        "alcohol": alcohol.astype(int), "performance_status": ps, "m_stage": m_stage,
        "surgery": surgery.astype(int), "hpv": hpv.astype(int), "target_volume_ml": volume,
        "suv_peak": suv, "n_nodes": n_nodes, "peritumoral_texture": texture,
    })


def truth_features(latent: pd.DataFrame) -> pd.DataFrame:
    """Standardised covariates of the truth model from latent variables (one row per patient)."""
    st = TRUTH_MODEL["standardise"]

    def z(name, values):
        return (np.asarray(values, float) - st[name]["mean"]) / st[name]["sd"]

    return pd.DataFrame({
        "log_volume_ml": z("log_volume_ml", np.log(latent["tumour_volume_ml"])),
        "suv_peak": z("suv_peak", latent["suv_peak"]),
        "n_nodes": z("n_nodes", latent["n_nodes"]),
        "peritumoral_texture": z("peritumoral_texture", latent["peritumoral_texture"]),
        "age": z("age", latent["age"]),
        "hpv": latent["hpv"].astype(float),
        "performance_status": latent["performance_status"].astype(float),
        "m1": (latent["m_stage"] == "M1").astype(float),
        "surgery": latent["surgery"].astype(float),
        "male": latent["male"].astype(float),
        "tobacco": latent["tobacco"].astype(float),
        "alcohol": latent["alcohol"].astype(float),
    }, index=latent.index)


def true_log_hazard(latent: pd.DataFrame) -> np.ndarray:
    """eta = sum_k beta_k x_k of the RFS truth model, shape (n_patients,)."""
    x = truth_features(latent)
    return sum(b * x[k].to_numpy() for k, b in TRUTH_MODEL["rfs"]["beta"].items())


# Which image property carries the DM model's "peritumoral_texture" term (same coefficient, same
# standardisation; the RFS truth is unchanged). "peritumoral_texture": the default (ring texture amplitude);
# "tumour_shape": a separate latent U(0, 1) sets the tumour's surface roughness (shape features);
# "tumour_heterogeneity": it sets the intra-tumour CT/PET heterogeneity (first-order / texture of the GTV).
DM_SIGNALS = ("peritumoral_texture", "tumour_shape", "tumour_heterogeneity")


def true_dm_probability(latent: pd.DataFrame, dm_signal: str = "peritumoral_texture") -> np.ndarray:
    """P(DM) = sigmoid(alpha0 + sum_k alpha_k x_k), shape (n_patients,).

    With ``dm_signal`` other than the default, the texture term is the latent ``dm_latent`` instead.
    """
    x = truth_features(latent)
    if dm_signal != "peritumoral_texture":
        st = TRUTH_MODEL["standardise"]["peritumoral_texture"]
        x["peritumoral_texture"] = (latent["dm_latent"].to_numpy(float) - st["mean"]) / st["sd"]
    dm = TRUTH_MODEL["dm"]
    logit = dm["intercept"] + sum(a * x[k].to_numpy() for k, a in dm["alpha"].items())
    return 1.0 / (1.0 + np.exp(-logit))


def event_times(eta: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Weibull PH event times in days: T = scale * (-log u / exp(eta)) ** (1/shape)."""
    r = TRUTH_MODEL["rfs"]
    return r["weibull_scale_days"] * (-np.log(u) / np.exp(eta)) ** (1.0 / r["weibull_shape"])


# ---------------------------------------------------------------------------------------- images


def _smooth_noise(shape, sigma_vox, rng) -> np.ndarray:
    """Zero-mean unit-sd band-limited noise."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox)
    return n / (n.std() + 1e-6)


def _box(coords, centre, half_mm) -> tuple[slice, slice, slice]:
    """(z, y, x) slices of the voxels within ``half_mm`` of ``centre`` along each axis."""
    x, y, z = (np.ravel(c) for c in coords)
    out = []
    for axis, c in ((z, centre[2]), (y, centre[1]), (x, centre[0])):
        idx = np.nonzero(np.abs(axis - c) <= half_mm)[0]
        out.append(slice(int(idx[0]), int(idx[-1]) + 1) if idx.size else slice(0, 0))
    return tuple(out)


def _axes_slices(box):
    """Slices for the broadcast coordinate arrays x (1,1,nx), y (1,ny,1), z (nz,1,1)."""
    zs, ys, xs = box
    return (slice(None), slice(None), xs), (slice(None), ys, slice(None)), (zs, slice(None), slice(None))


def _irregular_ball(X, Y, Z, centre, radius, rng, roughness=0.18) -> np.ndarray:
    """Boolean mask of a lumpy ellipsoid: radius modulated by a few random low-order harmonics."""
    dx, dy, dz = X - centre[0], Y - centre[1], Z - centre[2]
    axes = radius * np.exp(rng.normal(0, 0.12, 3))
    r = np.sqrt((dx / axes[0]) ** 2 + (dy / axes[1]) ** 2 + (dz / axes[2]) ** 2) + 1e-6
    ux, uy, uz = dx / (r * axes[0] + 1e-6), dy / (r * axes[1] + 1e-6), dz / (r * axes[2] + 1e-6)
    mod = np.ones(np.broadcast(ux, uy, uz).shape, np.float32)
    for _ in range(4):
        k = rng.normal(0, 1, 3)
        k = 2.5 * k / np.linalg.norm(k)
        mod += roughness / 2 * np.cos(k[0] * ux + k[1] * uy + k[2] * uz + rng.uniform(0, 2 * np.pi))
    return r <= mod


# Primary-tumour site options: z range (mm, patient frame: brain centre at z = 78, mandible at z = 2) of the
# primary's centre. Nodes are drawn 30 mm below to 8 mm above the primary. "oropharynx" is the default
# (and the original) draw; "low_neck" puts laryngeal/hypopharyngeal primaries and their level-III/IV nodes
# 160-180 mm below the brain centre (needs the "full" grid: the small one ends at z ~ -72).
PRIMARY_SITES = {"oropharynx": (-8.0, 12.0), "low_neck": (-100.0, -80.0)}


def _draw_patient_images(lat: pd.Series, grid: GridSpec, rng: np.random.Generator,
                         primary_site: str = "oropharynx", dm_signal: str = "peritumoral_texture"):
    """Return (ct HU int16, pet SUV float32, label uint8) arrays in (z, y, x) order, geometry, volume."""
    import SimpleITK as sitk

    nx, ny, nz = grid.ct_size
    sx, sy, sz = grid.ct_spacing
    origin = np.array([-(nx - 1) * sx / 2, -(ny - 1) * sy / 2, -(nz - 1) * sz / 2]) + rng.uniform(-6, 6, 3)
    x = (origin[0] + np.arange(nx) * sx)[None, None, :].astype(np.float32)
    y = (origin[1] + np.arange(ny) * sy)[None, :, None].astype(np.float32)
    z = (origin[2] + np.arange(nz) * sz)[:, None, None].astype(np.float32)
    shape = (nz, ny, nx)

    z_head = 20.0
    grow = 1.0 / (1.0 + np.exp(-(z - z_head) / 8.0))  # 0 in the neck, 1 in the head
    ax, ay = 50.0 + 8.0 * grow, 44.0 + 14.0 * grow
    ell = (x / ax) ** 2 + ((y - 2.0) / ay) ** 2
    body = np.broadcast_to(ell <= 1.0, shape)
    fat = body & np.broadcast_to(ell > 0.80, shape)
    airway = np.broadcast_to((x ** 2 + (y + 14.0) ** 2 <= 7.0 ** 2) & (z < z_head + 5), shape)
    spine_r = np.sqrt(x ** 2 + (y - 24.0) ** 2)
    spine = np.broadcast_to((spine_r <= 10.0) & (z < z_head + 15), shape)
    marrow = np.broadcast_to((spine_r <= 6.0) & (z < z_head + 15), shape)
    mand_r = np.sqrt(x ** 2 + (y - 8.0) ** 2)
    mandible = np.broadcast_to((mand_r >= 36) & (mand_r <= 42) & (y < 0) & (np.abs(z - (z_head - 18)) <= 6), shape)
    brain_e = (x / 48.0) ** 2 + ((y - 4.0) / 54.0) ** 2 + ((z - 78.0) / 42.0) ** 2
    brain = np.broadcast_to(brain_e <= 1.0, shape)
    skull = np.broadcast_to((brain_e > 1.0) & (brain_e <= 1.25), shape)

    # Tumour and nodes: drawn inside bounding boxes so that full-size grids stay fast.
    coords = (x, y, z)
    t_centre = (rng.uniform(-12, 12), rng.uniform(-24, -4), rng.uniform(*PRIMARY_SITES[primary_site]))
    r_eq = (3 * lat["target_volume_ml"] * 1000 / (4 * np.pi)) ** (1 / 3)
    tbox = _box(coords, t_centre, 1.6 * r_eq + 14.0)  # lesion + 8 mm ring + margin
    tsub = tuple(c[b] for c, b in zip(coords, _axes_slices(tbox)))
    tumour = np.zeros(shape, bool)
    rough = 0.05 + 0.45 * float(lat["dm_latent"]) if dm_signal == "tumour_shape" else 0.18
    hetero = float(lat["dm_latent"]) if dm_signal == "tumour_heterogeneity" else None
    tumour[tbox] = _irregular_ball(*tsub, t_centre, r_eq, rng, roughness=rough) & body[tbox]
    nodes = np.zeros(shape, bool)
    for k in range(int(lat["n_nodes"])):
        side = 1 if k % 2 == 0 else -1
        c = (side * rng.uniform(24, 36), rng.uniform(-8, 14), t_centre[2] + rng.uniform(-30, 8))
        r = rng.uniform(4.5, 8.0)
        nbox = _box(coords, c, 1.6 * r + 2.0)
        nsub = tuple(cc[b] for cc, b in zip(coords, _axes_slices(nbox)))
        nodes[nbox] |= _irregular_ball(*nsub, c, r, rng, roughness=0.1) & body[nbox] & ~tumour[nbox]

    # Peritumoral ring (<= 8 mm) with texture whose amplitude is the latent 'peritumoral_texture'.
    tb_shape = tumour[tbox].shape
    dist = ndimage.distance_transform_edt(~tumour[tbox], sampling=(sz, sy, sx)).astype(np.float32)
    ring_w = np.clip(1.0 - dist / 8.0, 0, 1) * (dist > 0) * body[tbox]
    tdist = ndimage.distance_transform_edt(tumour[tbox], sampling=(sz, sy, sx)).astype(np.float32)

    ct = np.full(shape, -1000.0, np.float32)
    ct[body] = 40.0
    ct[fat] = -90.0
    ct[airway] = -950.0
    ct[spine] = 650.0
    ct[marrow] = 220.0
    ct[mandible] = 900.0
    ct[skull] = 1000.0
    ct[brain] = 35.0
    ct[nodes] = 45.0
    t_in = tumour[tbox]
    ct_sd = 12.0 if hetero is None else 4.0 + 44.0 * hetero
    ct[tbox][t_in] = (62.0 + ct_sd * _smooth_noise(tb_shape, (0.5, 1.5, 1.5), rng))[t_in]
    ct[tbox] += ring_w * (130.0 * lat["peritumoral_texture"]) * _smooth_noise(tb_shape, (0.4, 0.8, 0.8), rng)
    ct = ndimage.gaussian_filter(ct, (0.3, 0.6, 0.6))
    ct += rng.normal(0, rng.uniform(8, 16), shape).astype(np.float32)

    suv = np.zeros(shape, np.float32)
    suv[body] = 1.0
    suv[fat] = 0.4
    suv[airway] = 0.0
    suv[spine | mandible | skull] = 0.8
    suv[brain] = rng.uniform(7.0, 10.0)
    suv[nodes] = rng.uniform(3.0, 8.0)
    prof = 0.55 + 0.45 * np.clip(tdist / max(tdist.max(), 1e-3), 0, 1)
    pet_sd = 0.08 if hetero is None else 0.02 + 0.30 * hetero
    suv[tbox][t_in] = (lat["suv_peak"] * prof * (1 + pet_sd * _smooth_noise(tb_shape, 1.0, rng)))[t_in]
    fwhm = 6.0
    sig = fwhm / 2.355
    suv = ndimage.gaussian_filter(suv, (sig / sz, sig / sy, sig / sx))

    label = np.zeros(shape, np.uint8)
    label[tumour] = 1
    label[nodes] = 2

    ct_img = sitk.GetImageFromArray(np.clip(np.round(ct), -1024, 3071).astype(np.int16))
    ct_img.SetSpacing(grid.ct_spacing)
    ct_img.SetOrigin(tuple(float(v) for v in origin))
    lab_img = sitk.GetImageFromArray(label)
    lab_img.CopyInformation(ct_img)

    # PET: coarser grid, shifted origin, partial overlap in z; resampled from the blurred activity.
    fine = sitk.GetImageFromArray(suv)
    fine.CopyInformation(ct_img)
    extent = np.array(grid.ct_size) * np.array(grid.ct_spacing)
    psp = np.array(grid.pet_spacing)
    psize = np.ceil((extent + np.array([8.0, 8.0, -12.0])) / psp).astype(int)
    porigin = origin + np.array([-4.0, -4.0, 0.0]) + rng.uniform([-3, -3, -4], [3, 3, 16])
    ref = sitk.Image([int(v) for v in psize], sitk.sitkFloat32)
    ref.SetSpacing(tuple(float(v) for v in psp))
    ref.SetOrigin(tuple(float(v) for v in porigin))
    pet_img = sitk.Resample(fine, ref, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    parr = sitk.GetArrayFromImage(pet_img)
    parr = np.clip(parr * (1 + rng.normal(0, 0.08, parr.shape)) + rng.normal(0, 0.05, parr.shape), 0, None)
    pet = sitk.GetImageFromArray(parr.astype(np.float32))
    pet.CopyInformation(pet_img)

    volume_ml = float(tumour.sum() * sx * sy * sz / 1000.0)
    return ct_img, pet, lab_img, volume_ml


# ------------------------------------------------------------------------------------------ cohort


def generate_cohort(
    out_dir: str | Path,
    n: int = 40,
    seed: int = 0,
    size: str = "small",
    progress: bool = True,
    primary_site: str = "oropharynx",
    dm_signal: str = "peritumoral_texture",
) -> pd.DataFrame:
    """Write a synthetic HECKTOR-layout cohort to ``out_dir`` and return its ground-truth table.

    Deterministic for a given (n, seed, size). Writes the patient folders, the clinical CSV
    (``HECKTOR_2025_Training_Task_2.csv`` plus a ``DistantMetastasis`` column),
    ``ground_truth.csv`` and ``ground_truth_model.json``.
    ``primary_site``: one of :data:`PRIMARY_SITES` (default ``"oropharynx"``: the original draw).
    ``dm_signal``: one of :data:`DM_SIGNALS` (default: the original peritumoral texture); other values
    move the DM signal into another feature family (shape, or intra-tumour heterogeneity).
    """
    if dm_signal not in DM_SIGNALS:
        raise ValueError(f"dm_signal must be one of {DM_SIGNALS}, got {dm_signal!r}")
    if size not in GRIDS:
        raise ValueError(f"size must be one of {sorted(GRIDS)}, got {size!r}")
    if primary_site not in PRIMARY_SITES:
        raise ValueError(f"primary_site must be one of {sorted(PRIMARY_SITES)}, got {primary_site!r}")
    if primary_site == "low_neck" and size != "full":
        raise ValueError("primary_site='low_neck' needs size='full' (the small grid ends above the low neck)")
    if n < 1:
        raise ValueError("n must be >= 1")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    grid = GRIDS[size]
    rng = np.random.default_rng(seed)
    lat = _draw_patients(n, rng)
    lat["dm_latent"] = np.random.default_rng([seed, 30_000]).random(n)  # own stream: default draws unchanged
    counters: dict[str, int] = {}
    ids = []
    for c in lat["center"]:
        name = CENTERS[c]
        counters[name] = counters.get(name, 0) + 1
        ids.append(f"{name}-{counters[name]:03d}")
    lat.insert(0, schema.PATIENT_ID, ids)

    it = range(n)
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(it, desc="synthesising patients", unit="patient")
    volumes = []
    for i in it:
        pid = ids[i]
        prng = np.random.default_rng([seed, i, 7])
        ct, pet, lab, vol = _draw_patient_images(lat.iloc[i], grid, prng, primary_site, dm_signal)
        folder = out / pid
        write_image_atomic(ct, folder / f"{pid}{schema.CT_SUFFIX}")
        write_image_atomic(pet, folder / f"{pid}{schema.PET_SUFFIX}")
        write_image_atomic(lab, folder / f"{pid}{schema.LABEL_SUFFIX}")
        volumes.append(vol)
    lat["tumour_volume_ml"] = volumes  # what the label actually holds drives the truth model

    eta = true_log_hazard(lat)
    p_dm = true_dm_probability(lat, dm_signal)
    orng = np.random.default_rng([seed, 10_000])
    u = orng.uniform(1e-12, 1.0, n)
    t_event = event_times(eta, u)
    cens = TRUTH_MODEL["rfs"]["censoring"]
    admin = orng.uniform(*cens["admin_uniform_days"], n)
    loss = orng.exponential(cens["loss_exponential_mean_days"], n)
    t_cens = np.minimum(admin, loss)
    rfs = np.maximum(np.round(np.minimum(t_event, t_cens)), 1.0)
    relapse = (t_event <= t_cens).astype(int)
    u_dm = orng.uniform(0, 1, n)
    dm = (u_dm < p_dm).astype(int)

    clinical = pd.DataFrame({
        schema.PATIENT_ID: ids,
        schema.CENTER: lat["center"] + 1,
        schema.AGE: lat["age"],
        schema.GENDER: lat["male"],
        schema.TOBACCO: lat["tobacco"],
        schema.ALCOHOL: lat["alcohol"],
        schema.PERFORMANCE: lat["performance_status"],
        schema.TREATMENT: lat["surgery"],
        schema.M_STAGE: lat["m_stage"],
        schema.HPV: lat["hpv"],
        schema.RFS: rfs.astype(int),
        schema.RELAPSE: relapse,
        schema.DM: dm,
    })
    mrng = np.random.default_rng([seed, 20_000])
    for col, p in TRUTH_MODEL["missingness"].items():
        if p > 0:
            clinical[col] = clinical[col].astype(object).where(mrng.random(n) >= p, None)
    write_csv_atomic(clinical, out / schema.CLINICAL_CSV_NAME)

    drop = ["center", "target_volume_ml"] + (["dm_latent"] if dm_signal == "peritumoral_texture" else [])
    truth = lat.drop(columns=drop).assign(
        true_log_hazard=eta, true_dm_probability=p_dm, u_event=u, event_time_days=t_event,
        censor_time_days=t_cens, u_dm=u_dm,
    )
    write_csv_atomic(truth, out / schema.GROUND_TRUTH_CSV_NAME, float_format="%.10g")
    write_json_atomic(out / schema.GROUND_TRUTH_MODEL_NAME,
                      {"generator": "hnc_core.synth", "n": n, "seed": seed, "size": size,
                       "primary_site": primary_site, "dm_signal": dm_signal, **TRUTH_MODEL})
    return truth


def load_ground_truth(cohort_dir: str | Path) -> pd.DataFrame:
    """Ground-truth table of a synthetic cohort, indexed by PatientID."""
    return pd.read_csv(Path(cohort_dir) / schema.GROUND_TRUTH_CSV_NAME).set_index(schema.PATIENT_ID)
