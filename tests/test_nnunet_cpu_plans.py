"""CPU plans derived from nnU-Net plans (nnunet_plugins.cpu_plans): topology, names, data reuse, and a
HecMamba built from them by nnU-Net's PlansManager and the trainer's builder."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from nnunet_plugins.cpu_plans import cpu_plans, main, write_cpu_plans

ARCH = {"n_stages": 6, "features_per_stage": [32, 64, 128, 256, 320, 320], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 3, 3]] + [[3, 3, 3]] * 5,
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]],
        "n_conv_per_stage": [2] * 6, "n_conv_per_stage_decoder": [2] * 5, "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-05, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
# the 3d_fullres part of what nnU-Net 2.8 plans for the synthetic 1x1x3 mm cohort
FULLRES = {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
           "patch_size": [48, 128, 128], "median_image_size_in_voxels": [48.0, 128.0, 128.0], "spacing": [3.0, 1.0, 1.0],
           "normalization_schemes": ["CTNormalization", "ZScoreNormalization"], "use_mask_for_norm": [False, False],
           "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
           "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
           "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
           "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
           "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
           "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                            "arch_kwargs": ARCH, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]},
           "batch_dice": False}
PLANS = {"dataset_name": "Dataset501_HECKTOR", "plans_name": "nnUNetPlans",
         "original_median_spacing_after_transp": [3.0, 1.0, 1.0], "original_median_shape_after_transp": [48, 128, 128],
         "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
         "configurations": {"2d": {**copy.deepcopy(FULLRES), "data_identifier": "nnUNetPlans_2d",
                                   "patch_size": [128, 128], "spacing": [1.0, 1.0]},
                            "3d_fullres": FULLRES, "3d_lowres": {"inherits_from": "3d_fullres", "spacing": [6.0, 2.0, 2.0],
                                                                 "data_identifier": "nnUNetPlans_3d_lowres"}},
         "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
         "foreground_intensity_properties_per_channel": {"0": {"mean": 55.6, "std": 39.5, "percentile_00_5": -210.0,
                                                               "percentile_99_5": 191.0},
                                                         "1": {"mean": 5.6, "std": 2.6, "percentile_00_5": 1.7,
                                                               "percentile_99_5": 13.6}}}


def _divisible(patch, strides) -> bool:
    for axis, size in enumerate(patch):
        factor = 1
        for s in strides:
            factor *= s[axis]
        if size % factor:
            return False
    return True


def test_defaults_coarsen_to_2mm_and_shrink_the_network():
    src = copy.deepcopy(PLANS)
    out = cpu_plans(src, "nnUNetPlans_cpu")
    assert src == PLANS  # the source is not modified
    assert out["plans_name"] == "nnUNetPlans_cpu" and list(out["configurations"]) == ["3d_fullres"]
    cfg = out["configurations"]["3d_fullres"]
    arch = cfg["architecture"]["arch_kwargs"]
    assert cfg["spacing"] == [3.0, 2.0, 2.0] and cfg["median_image_size_in_voxels"] == [48, 64, 64]
    assert cfg["data_identifier"] == "nnUNetPlans_cpu_3d_fullres"  # new spacing -> own preprocessed data
    assert cfg["patch_size"] == [32, 48, 48] and cfg["batch_size"] == 2
    assert arch["n_stages"] == 4 and arch["features_per_stage"] == [8, 16, 32, 64]
    assert len(arch["strides"]) == len(arch["kernel_sizes"]) == 4 and arch["strides"][0] == [1, 1, 1]
    assert len(arch["n_conv_per_stage_decoder"]) == 3 and _divisible(cfg["patch_size"], arch["strides"])
    for key in ("normalization_schemes", "resampling_fn_data_kwargs", "transpose_forward"):
        assert (cfg.get(key), out.get(key)) == (FULLRES.get(key), PLANS.get(key))


def test_source_spacing_keeps_the_preprocessed_data_and_nnunet_anisotropic_topology():
    cfg = cpu_plans(PLANS, "p", patch_size=(32, 64, 64), features=(16, 32, 64, 128),
                    min_spacing_mm=None)["configurations"]["3d_fullres"]
    arch = cfg["architecture"]["arch_kwargs"]
    assert cfg["data_identifier"] == "nnUNetPlans_3d_fullres" and cfg["spacing"] == [3.0, 1.0, 1.0]
    # 3 mm slices vs 1 mm in-plane: pool in-plane first, 1x3x3 kernels at full resolution (as nnU-Net plans)
    assert arch["strides"][:2] == [[1, 1, 1], [1, 2, 2]] and arch["kernel_sizes"][0] == [1, 3, 3]
    assert cfg["patch_size"] == [32, 64, 64] and _divisible(cfg["patch_size"], arch["strides"])


def test_patch_is_rounded_to_the_downsampling_factor_and_inherited_configs_resolve():
    cfg = cpu_plans(PLANS, "p", patch_size=(30, 50, 50), configuration="3d_lowres")["configurations"]["3d_lowres"]
    assert "inherits_from" not in cfg and cfg["spacing"] == [6.0, 2.0, 2.0]
    assert _divisible(cfg["patch_size"], cfg["architecture"]["arch_kwargs"]["strides"])
    assert all(abs(p - q) <= 8 for p, q in zip(cfg["patch_size"], (30, 50, 50)))


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="axes"):
        cpu_plans(PLANS, "p", patch_size=(64, 64))
    (tmp_path / "a.json").write_text(json.dumps(PLANS))
    with pytest.raises(ValueError, match="same file"):
        write_cpu_plans(tmp_path / "a.json", tmp_path / "a.json")
    with pytest.raises(ValueError, match=r"\.json"):
        write_cpu_plans(tmp_path / "a.json", tmp_path / "b.txt")
    with pytest.raises(KeyError, match="3d_cascade"):
        cpu_plans(PLANS, "p", configuration="3d_cascade_fullres")


def test_written_plans_build_a_working_hecmamba(tmp_path, capsys):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_plugins.trainers.HecMambaTrainer_cpu import HecMambaTrainer_cpu

    (tmp_path / "nnUNetPlans.json").write_text(json.dumps(PLANS))
    main([str(tmp_path / "nnUNetPlans.json"), str(tmp_path / "nnUNetPlans_cpu.json"), "--patch", "16", "32", "32",
          "--features", "8", "16", "32"])
    assert "plans nnUNetPlans_cpu" in capsys.readouterr().out
    pm = PlansManager(str(tmp_path / "nnUNetPlans_cpu.json"))
    cm = pm.get_configuration("3d_fullres")
    assert pm.plans_name == "nnUNetPlans_cpu" and list(cm.patch_size) == [16, 32, 32]
    net = HecMambaTrainer_cpu.build_network_architecture(pm, cm, 2, 3, True)
    assert net.mamba_stage_ids == [2]
    with torch.no_grad():
        out = net(torch.randn(1, 2, *cm.patch_size))
    assert out[0].shape == (1, 3, 16, 32, 32) and torch.isfinite(out[0]).all()


def test_lowres_drops_cascade_links_to_configurations_not_kept():
    plans = {**PLANS, "configurations": {**PLANS["configurations"], "3d_lowres": {
        **PLANS["configurations"]["3d_lowres"], "next_stage": "3d_cascade_fullres"}}}
    out = cpu_plans(plans, "p", configuration="3d_lowres")
    cfg = out["configurations"]["3d_lowres"]
    assert "next_stage" not in cfg and "previous_stage" not in cfg
    assert set(out["configurations"]) == {"3d_lowres"}
