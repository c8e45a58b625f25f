"""The synthetic cohort generator: determinism, geometry, labels and a reproducible ground truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from hnc_core import schema
from hnc_core.synth import TRUTH_MODEL, event_times, generate_cohort, load_ground_truth, true_dm_probability, \
    true_log_hazard


def _arrays(cohort_dir, pid):
    return [sitk.GetArrayFromImage(sitk.ReadImage(str(cohort_dir / pid / f"{pid}{s}")))
            for s in (schema.CT_SUFFIX, schema.PET_SUFFIX, schema.LABEL_SUFFIX)]


def test_deterministic_for_a_seed(tiny_cohort, tmp_path):
    again = tmp_path / "again"
    generate_cohort(again, n=4, seed=3, progress=False)
    assert (again / schema.CLINICAL_CSV_NAME).read_text() == (tiny_cohort / schema.CLINICAL_CSV_NAME).read_text()
    pid = load_ground_truth(again).index[0]
    for a, b in zip(_arrays(again, pid), _arrays(tiny_cohort, pid)):
        np.testing.assert_array_equal(a, b)
    other = tmp_path / "other"
    generate_cohort(other, n=4, seed=4, progress=False)
    assert (other / schema.CLINICAL_CSV_NAME).read_text() != (tiny_cohort / schema.CLINICAL_CSV_NAME).read_text()


def test_ct_and_pet_grids_differ_and_overlap(tiny_cohort):
    from hnc_core.cohort import overlap_fraction

    for pid in load_ground_truth(tiny_cohort).index:
        ct = sitk.ReadImage(str(tiny_cohort / pid / f"{pid}{schema.CT_SUFFIX}"))
        pet = sitk.ReadImage(str(tiny_cohort / pid / f"{pid}{schema.PET_SUFFIX}"))
        assert np.allclose(ct.GetSpacing(), (1.0, 1.0, 3.0))
        assert np.allclose(pet.GetSpacing(), (4.0, 4.0, 4.0))
        assert not np.allclose(ct.GetOrigin(), pet.GetOrigin())
        assert 0.7 < overlap_fraction(ct, pet) <= 1.0


def test_intensities_labels_and_anatomy(tiny_cohort):
    truth = load_ground_truth(tiny_cohort)
    for pid, row in truth.iterrows():
        ct, pet, lab = _arrays(tiny_cohort, pid)
        assert ct.dtype == np.int16 and pet.dtype == np.float32
        assert set(np.unique(lab)) <= {0, 1, 2} and (lab == 1).any()
        assert ((lab == 2).any()) == (row.n_nodes > 0)
        assert ct.min() <= -900 and ct.max() >= 600  # air and bone
        assert 30 < np.median(ct[lab == 1]) < 100  # soft-tissue tumour
        assert abs((lab == 1).sum() * 3.0 / 1000 - row.tumour_volume_ml) < 1e-6
        top, bottom = pet[-3:].max(), pet[:3].max()
        assert top > 4.0 and top > bottom  # brain uptake at the top


def test_ground_truth_reproduces_written_outcomes(tiny_cohort):
    truth = load_ground_truth(tiny_cohort)
    clin = pd.read_csv(tiny_cohort / schema.CLINICAL_CSV_NAME).set_index(schema.PATIENT_ID).loc[truth.index]
    eta = true_log_hazard(truth)
    np.testing.assert_allclose(eta, truth.true_log_hazard, rtol=1e-8)
    np.testing.assert_allclose(true_dm_probability(truth), truth.true_dm_probability, rtol=1e-8)
    t = event_times(truth.true_log_hazard.to_numpy(), truth.u_event.to_numpy())
    np.testing.assert_allclose(t, truth.event_time_days, rtol=1e-8)
    rfs = np.maximum(np.round(np.minimum(t, truth.censor_time_days)), 1)
    np.testing.assert_array_equal(clin[schema.RFS].to_numpy(), rfs)
    np.testing.assert_array_equal(clin[schema.RELAPSE].to_numpy(), (t <= truth.censor_time_days).astype(int))
    np.testing.assert_array_equal(clin[schema.DM].to_numpy(), (truth.u_dm < truth.true_dm_probability).astype(int))


def test_truth_model_signs():
    beta = TRUTH_MODEL["rfs"]["beta"]
    assert beta["log_volume_ml"] > 0 and beta["hpv"] < 0 and beta["m1"] > 0


def test_oracle_is_informative_on_a_larger_cohort(tmp_path):
    from sklearn.metrics import roc_auc_score
    from sksurv.metrics import concordance_index_censored

    out = tmp_path / "c"
    # outcomes do not depend on images beyond the drawn volume, so a 24-patient cohort is enough here
    generate_cohort(out, n=24, seed=1, progress=False)
    truth = load_ground_truth(out)
    clin = pd.read_csv(out / schema.CLINICAL_CSV_NAME).set_index(schema.PATIENT_ID).loc[truth.index]
    c = concordance_index_censored(clin[schema.RELAPSE] == 1, clin[schema.RFS], truth.true_log_hazard)[0]
    assert c > 0.65
    assert 0 < clin[schema.DM].mean() < 1
    assert roc_auc_score(clin[schema.DM], truth.true_dm_probability) > 0.65
    missing = clin[[schema.HPV, schema.TOBACCO]].isna().mean()
    assert (missing > 0).all()  # realistic missingness


def test_dm_signal_option_moves_the_dm_term_and_stays_reproducible(tmp_path):
    """dm_signal="tumour_shape": the DM truth uses the roughness latent (recorded), default coefficients."""
    truth = generate_cohort(tmp_path / "shape", n=4, seed=2, progress=False, dm_signal="tumour_shape")
    assert "dm_latent" in truth.columns
    np.testing.assert_allclose(true_dm_probability(truth, "tumour_shape"), truth.true_dm_probability, rtol=1e-8)
    assert not np.allclose(true_dm_probability(truth), truth.true_dm_probability)  # not the texture term
    default = generate_cohort(tmp_path / "default", n=4, seed=2, progress=False)
    assert "dm_latent" not in default.columns
    with pytest.raises(ValueError, match="dm_signal"):
        generate_cohort(tmp_path / "bad", n=1, progress=False, dm_signal="nope")
