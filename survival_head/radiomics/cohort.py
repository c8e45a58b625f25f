"""Cohort-scale radiomics: per-patient cache, local process pool or a Dask cluster.

Each patient's features are cached as ``CACHE/<PatientID>.json`` together with a key that hashes
the params, region settings and the CT and mask file contents: a re-run skips patients whose key
matches and recomputes the others. A failing patient is reported (log + ``df.attrs["failures"]``) and
the rest go on.
"""

from __future__ import annotations

import json
import logging
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
import multiprocessing as mp

import pandas as pd
from tqdm.auto import tqdm

from hnc_core import schema
from hnc_core.failures import by_patient, failure
from hnc_core.identity import cache_key as _files_key
from hnc_core.io import write_json_atomic

from survival_head.radiomics.extract import load_params, params_digest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """Everything one worker needs for one patient (plain data, picklable)."""

    patient_id: str
    ct: str
    mask: str
    params: dict
    include_nodes: bool
    ring_mm: float
    key: str


def cache_key(params: dict, ct: str, mask: str, include_nodes: bool, ring_mm: float) -> str:
    """Key of everything that determines a patient's features (:func:`hnc_core.identity.cache_key`)."""
    return _files_key((ct, mask), {"params": params_digest(params), "include_nodes": bool(include_nodes),
                                   "ring_mm": round(float(ring_mm), 4)},
                      version="radiomics-2 ring=tissue")  # ring definition: restricted to tissue (air excluded)


def run_job(job: Job) -> tuple[str, dict | None, str | None]:
    """Extract one patient: ``(PatientID, features or None, error message or None)``. Never raises."""
    try:
        from survival_head.dm.regions import load_regions
        from survival_head.radiomics.extract import extract_patient

        regions = load_regions(job.patient_id, job.ct, job.mask, include_nodes=job.include_nodes,
                               ring_mm=job.ring_mm)
        return job.patient_id, extract_patient(regions, job.params), None
    except Exception as exc:  # noqa: BLE001 - reported per patient, batch goes on
        msg = str(exc)
        if job.patient_id not in msg:
            msg = f"[{job.patient_id}] {job.ct}: {msg}"
        return job.patient_id, None, msg


def _read_cache(path: Path, key: str) -> dict | None:
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return d["features"] if d.get("key") == key else None


def build_jobs(cohort_dir, params: dict, mask_dir=None, include_nodes=True, ring_mm=8.0, ids=None):
    """Jobs for the DM-usable patients of ``cohort_dir`` (or ``ids``), plus failure records of those that cannot be."""
    from hnc_core.identity import read_cohort
    from survival_head.dm.regions import RegionError, mask_file

    cohort = read_cohort(cohort_dir, check_images=False)
    wanted = list(ids) if ids is not None else sorted(cohort.patients)
    jobs, failures = [], []
    for pid in wanted:
        rec = cohort.patients.get(pid)
        if rec is None or rec.ct is None:
            failures.append(failure(pid, (rec.folder if rec else None) or cohort_dir,
                                    f"[{pid}] no CT image in {cohort_dir}"))
            continue
        try:
            mask = mask_file(pid, rec.label, mask_dir)
        except RegionError as exc:
            failures.append(failure(pid, getattr(exc, "filename", None) or mask_dir or rec.label, str(exc)))
            continue
        key = cache_key(params, str(rec.ct), str(mask), include_nodes, ring_mm)
        jobs.append(Job(pid, str(rec.ct), str(mask), params, include_nodes, float(ring_mm), key))
    return jobs, failures


def extract_cohort(
    cohort_dir: str | Path,
    cache_dir: str | Path,
    workers: int = 1,
    scheduler: str | None = None,
    mask_dir: str | Path | None = None,
    *,
    params: str | Path | dict | None = None,
    include_nodes: bool = True,
    ring_mm: float = 8.0,
    ids=None,
    use_dask: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Radiomics of every patient of a cohort, cached per patient.

    Args:
        cohort_dir: HECKTOR-layout cohort.
        cache_dir: per-patient JSON cache (created).
        workers: local worker processes (``<= 1``: in this process); Dask local-cluster size too.
        scheduler: address of an existing Dask scheduler (``tcp://host:8786``); implies Dask.
        mask_dir: folder of predicted masks ``<PatientID>.nii.gz`` (default: the HECKTOR labels).
        params: params YAML path / shipped name / ``"fast"`` / dict (default: shipped ``params.yaml``).
        include_nodes: tumour = GTVp ∪ GTVn (True) or GTVp only.
        ring_mm: peritumoral ring width (mm).
        ids: restrict to these PatientIDs.
        use_dask: run on a fresh ``distributed.LocalCluster`` of ``workers`` processes.

    Returns:
        DataFrame indexed by PatientID, one column per feature (``2 x 1,502`` for the full params);
        ``df.attrs["failures"]``: failure records ``{"PatientID", "file", "error"}`` of the patients left out
        (``df.attrs["errors"]``: the same as ``{PatientID: error}``).
    """
    params = params if isinstance(params, dict) else load_params(params)
    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    jobs, failures = build_jobs(cohort_dir, params, mask_dir, include_nodes, ring_mm, ids)
    rows: dict[str, dict] = {}
    todo = []
    for job in jobs:
        hit = _read_cache(cache / f"{job.patient_id}.json", job.key)
        if hit is not None:
            rows[job.patient_id] = hit
        else:
            todo.append(job)
    if todo:
        log.info("radiomics: %d cached, %d to extract", len(rows), len(todo))
        if scheduler is not None or use_dask:
            results = _run_dask(todo, workers, scheduler, progress)
        else:
            results = _run_local(todo, workers, progress)
        for job, (pid, feats, err) in results:
            if err is not None:
                failures.append(failure(pid, f"{job.ct} / {job.mask}", err))
                log.error("radiomics failed: %s", err)
                continue
            write_json_atomic(cache / f"{pid}.json", {"patient_id": pid, "key": job.key, "features": feats})
            rows[pid] = feats
    df = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    df.index.name = schema.PATIENT_ID
    df.attrs["failures"], df.attrs["errors"] = failures, by_patient(failures)
    return df


def _run_local(jobs: list[Job], workers: int, progress: bool):
    bar = tqdm(total=len(jobs), desc="radiomics", unit="patient", disable=not progress)
    out = []
    if workers <= 1:
        for job in jobs:
            out.append((job, run_job(job)))
            bar.update()
    else:
        ctx = mp.get_context("spawn")  # safe with threads (torch, dask) in the parent
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futs = {pool.submit(run_job, job): job for job in jobs}
            for fut in as_completed(futs):
                out.append((futs[fut], fut.result()))
                bar.update()
    bar.close()
    return out


def _run_dask(jobs: list[Job], workers: int, scheduler: str | None, progress: bool):
    """Same jobs on Dask: an existing scheduler (``scheduler`` address) or a fresh LocalCluster.

    Start external workers with one thread each (``dask worker ADDR --nthreads 1 --nworkers N``):
    one pyradiomics extraction per process is the safe and CPU-efficient unit.
    """
    from distributed import Client, LocalCluster, as_completed as dask_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(n_workers=max(1, workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futs = client.map(run_job, jobs, pure=False)
        by_key = {f.key: j for f, j in zip(futs, jobs)}
        out = []
        bar = tqdm(total=len(jobs), desc="radiomics (dask)", unit="patient", disable=not progress)
        for fut in dask_completed(futs):
            out.append((by_key[fut.key], fut.result()))
            bar.update()
        bar.close()
        return out
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
