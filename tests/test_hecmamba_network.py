"""Mamba block and HecMamba network: names, backend-independent outputs, deep supervision, build signatures."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nnunet_plugins.networks import HecMamba, HecMambaNoMamba, MambaBlock

MAMBA_NAMES = {"in_proj.weight", "conv1d.weight", "conv1d.bias", "x_proj.weight", "dt_proj.weight", "dt_proj.bias",
               "A_log", "D", "out_proj.weight"}


def test_mamba_block_names_and_round_trip_across_backends(monkeypatch):
    torch.manual_seed(0)
    blk = MambaBlock(32)
    assert set(blk.state_dict()) == MAMBA_NAMES
    assert blk.d_inner == 64 and blk.dt_rank == 2
    other = MambaBlock(32)
    other.load_state_dict(blk.state_dict())
    x = torch.randn(2, 50, 32)
    monkeypatch.setenv("HNC_SCAN_BACKEND", "portable")
    y1 = blk(x)
    monkeypatch.setenv("HNC_SCAN_BACKEND", "reference")
    y2 = other(x)
    assert torch.allclose(y1, y2, rtol=1e-4, atol=1e-5)


def _kwargs(n_stages, patch):
    feats = [8, 16, 24, 32, 32][:n_stages]
    strides = [[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1)
    return dict(input_channels=2, n_stages=n_stages, features_per_stage=feats, conv_op=nn.Conv3d,
                kernel_sizes=[[3, 3, 3]] * n_stages, strides=strides, num_classes=3, norm_op=nn.InstanceNorm3d,
                norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True},
                patch_size=patch)


@pytest.mark.parametrize("n_stages,patch", [(3, [16, 16, 16]), (4, [16, 32, 24])])
def test_deep_supervision_shapes(n_stages, patch):
    net = HecMamba(**_kwargs(n_stages, patch))
    net.apply(net.initialize)
    x = torch.randn(1, 2, *patch)
    outs = net(x)
    assert len(outs) == n_stages - 1
    for i, o in enumerate(outs):  # highest resolution first
        assert list(o.shape) == [1, 3] + [p // 2 ** i for p in patch]
    net.decoder.deep_supervision = False
    assert list(net(x).shape) == [1, 3, *patch]
    assert net.mamba_stage_ids == list(range(2, n_stages))
    assert net.compute_conv_feature_map_size(patch) > HecMambaNoMamba(**_kwargs(n_stages, patch)) \
        .compute_conv_feature_map_size(patch)


def test_ablation_has_no_mamba():
    net = HecMambaNoMamba(**_kwargs(3, [16, 16, 16]))
    assert not any("A_log" in k for k in net.state_dict())


def test_build_network_both_signatures(tmp_path):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunet_plugins.trainers.HecMambaTrainer import HecMambaTrainer

    arch = {"n_stages": 3, "features_per_stage": [8, 16, 32], "conv_op": "torch.nn.modules.conv.Conv3d",
            "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]],
            "n_conv_per_stage": [2, 2, 2], "n_conv_per_stage_decoder": [2, 2], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True}}
    req = ["conv_op", "norm_op", "dropout_op", "nonlin"]
    plans = {"dataset_name": "D", "plans_name": "P", "original_median_spacing_after_transp": [1, 1, 1],
             "original_median_shape_after_transp": [16, 16, 16], "image_reader_writer": "SimpleITKIO",
             "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "experiment_planner_used": "x",
             "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {},
             "configurations": {"3d_fullres": {
                 "data_identifier": "d", "preprocessor_name": "DefaultPreprocessor", "batch_size": 2,
                 "patch_size": [16, 16, 16], "median_image_size_in_voxels": [16, 16, 16], "spacing": [1, 1, 1],
                 "normalization_schemes": ["CTNormalization", "ZScoreNormalization"], "use_mask_for_norm": [False, False],
                 "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
                 "resampling_fn_data_kwargs": {}, "resampling_fn_seg_kwargs": {}, "resampling_fn_probabilities":
                 "resample_data_or_seg_to_shape", "resampling_fn_probabilities_kwargs": {}, "batch_dice": False,
                 "architecture": {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                                  "arch_kwargs": arch, "_kw_requires_import": req}}}}
    pm = PlansManager(plans)
    cm = pm.get_configuration("3d_fullres")
    new = HecMambaTrainer.build_network_architecture(pm, cm, 2, 3, enable_deep_supervision=True)
    old = HecMambaTrainer.build_network_architecture(
        "dynamic_network_architectures.architectures.unet.PlainConvUNet", arch, req, 2, 3,
        enable_deep_supervision=False)
    assert isinstance(new, HecMamba) and isinstance(old, HecMamba)
    assert new.decoder.deep_supervision and not old.decoder.deep_supervision
    assert set(new.state_dict()) == set(old.state_dict())  # same architecture from either signature
    import inspect

    assert "plans_manager" in inspect.signature(HecMambaTrainer.build_network_architecture).parameters


def test_weight_decay_groups_exclude_a_log_d_norms_biases():
    from nnunet_plugins.trainers.schedule import WarmupPolyLR, param_groups

    net = HecMamba(**_kwargs(3, [16, 16, 16]))
    decay, no_decay = param_groups(net, 0.01)
    ids = {id(p) for p in no_decay["params"]}
    for name, p in net.named_parameters():
        excluded = name.endswith(("A_log", ".D", "bias")) or p.ndim <= 1
        assert (id(p) in ids) == excluded, name
    opt = torch.optim.AdamW([decay, no_decay], lr=1e-3)
    sched = WarmupPolyLR(opt, 1e-3, 100, warmup=10)
    assert sched.lr_at(0) == pytest.approx(1e-4) and sched.lr_at(9) == pytest.approx(1e-3)
    assert sched.lr_at(55) == pytest.approx(1e-3 * 0.5 ** 0.9) and sched.lr_at(100) == 0.0


def test_traced_network_is_pure_torch_and_its_scan_loop_is_not_unrolled():
    """TorchScript export traces under use_backend("torch"): both ops resolve to PyTorch, the traced HecMamba
    equals the eager (numba) one, and the traced graph is the same size at 4x the tokens (the chunk loop stays
    one scripted loop), so model.ts holds only aten ops."""
    from nnunet_plugins.ops import backend

    with backend.use_backend("torch"):
        assert backend.resolve("scan", torch.device("cpu")) == "torch"
        assert backend.resolve("conv1d", torch.device("cpu")) == "torch"
    assert backend.requested_backend() != "torch" or backend.os.environ.get(backend.ENV_VAR) == "torch"
    sizes = []
    for patch in ([16, 16, 16], [16, 32, 32]):
        torch.manual_seed(0)
        kw = _kwargs(3, patch)
        kw["deep_supervision"] = False
        net = HecMamba(**kw).eval()
        x = torch.randn(1, 2, *patch)
        with torch.no_grad():
            ref = net(x)
            with backend.use_backend("torch"):
                traced = torch.jit.trace(net, x, check_trace=False)
            assert torch.allclose(traced(x), ref, atol=1e-4)
        graph = str(traced.inlined_graph)
        assert "prim::Loop" in graph and "PythonOp" not in graph
        sizes.append(graph.count("\n"))
    assert sizes[1] < sizes[0] * 1.2, sizes
