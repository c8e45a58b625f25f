"""``hnc-petct seg-evaluate``: a ground-truth case without prediction counts as an empty prediction (the
challenge's rule) unless ``--skip-missing`` restores scoring only the predicted cases."""

from __future__ import annotations

import argparse
import json

import numpy as np
import SimpleITK as sitk

from nnunet_plugins.commands import evaluate as cmd


def _write(arr: np.ndarray, path) -> None:
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing((1.0, 1.0, 2.0))
    sitk.WriteImage(img, str(path))


def _run(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    cmd.add_arguments(p)
    return cmd.main(p.parse_args(argv))


def test_missing_prediction_counts_as_empty_by_default(tmp_path, capsys):
    for d in ("gt", "pred"):
        (tmp_path / d).mkdir()
    lab = np.zeros((8, 16, 16), np.uint8)
    lab[3:5, 4:10, 4:10] = 1
    for name in ("a", "b"):
        _write(lab, tmp_path / "gt" / f"{name}.nii.gz")
    _write(lab, tmp_path / "pred" / "a.nii.gz")

    assert _run([str(tmp_path / "pred"), str(tmp_path / "gt"), "--out", str(tmp_path / "o1")]) == 0
    s = json.loads((tmp_path / "o1" / "summary.json").read_text())
    assert s["n_cases"] == 2 and s["n_gt_without_prediction"] == 1
    assert s["per_class"]["GTVp"]["mean_dsc"] == 0.5  # a: 1, b (no prediction = empty): 0
    assert "b,GTVp,True" in (tmp_path / "o1" / "per_case.csv").read_text()

    assert _run([str(tmp_path / "pred"), str(tmp_path / "gt"), "--out", str(tmp_path / "o2"), "--skip-missing"]) == 0
    s = json.loads((tmp_path / "o2" / "summary.json").read_text())
    assert s["n_cases"] == 1 and s["per_class"]["GTVp"]["mean_dsc"] == 1.0

    assert _run([str(tmp_path / "pred"), str(tmp_path / "gt"), "--require-all"]) == 1
    assert "no prediction" in capsys.readouterr().err
