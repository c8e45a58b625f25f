"""A trained HecMamba fold as one TorchScript module: nnU-Net's whole-case inference, ``models/model.ts``.

:class:`NnUNetCaseInference` replays what ``nnUNetPredictor.predict_single_npy_array`` does to an image that is
already on the trained spacing (the bundle's ``Spacingd`` puts it there): axis transpose of the plans, crop to
the non-zero box, per-channel normalisation with the plans' parameters (``CTNormalization``: clip to the
training foreground's 0.5/99.5 percentiles, then its mean/std; ``ZScoreNormalization``: the image's own
mean/std), centred zero padding to the patch, nnU-Net's tile steps, the Gaussian importance map, test-time
mirroring over the trainer's allowed axes, float16 accumulation as nnU-Net does, softmax in float32, the crop
pasted back into background (probability 1 for background outside it, as nnU-Net's
``revert_cropping_on_probabilities``). The bundle's postprocessing takes the probabilities back to the input
grid and takes the argmax. The network is traced once at the patch size with the pure-PyTorch scan (a scripted chunk loop,
no numba, no CUDA extension), so ``torch.jit.load`` needs only PyTorch.

Not covered (refused at export, the Python ``HecMambaBundleNet`` route still serves them): region-based
training, cascades, ``use_mask_for_norm``, normalisation schemes other than CT / z-score / none.
"""


import itertools
import json
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["NnUNetCaseInference", "script_bundle_net", "save_model_ts"]

NORM_CODES = {"NoNormalization": 0, "CTNormalization": 1, "ZScoreNormalization": 2}


class NnUNetCaseInference(nn.Module):
    """``forward(image) -> probabilities``: image (B, C, W, H, D) float32 in MONAI's layout (CT HU, PET SUV, on
    the trained spacing); probabilities (B, K, W, H, D) float32 (K = 3: background, GTVp, GTVn), same grid; their
    argmax is ``nnUNetv2_predict``'s label map.

    Args:
        network: the traced segmentation network, (1, C, *patch) -> (1, K, *patch) logits, nnU-Net's axes.
        patch_size: nnU-Net's patch (in the plans' transposed axes).
        gaussian: (*patch) float16 importance map (nnU-Net's ``compute_gaussian``, value_scaling_factor 10).
        norm: per channel, a code of :data:`NORM_CODES`; ``clip_low``/``clip_high``/``mean``/``std`` the plans'
            foreground intensity properties (used by CT normalisation).
        mirror_axes: the axis combinations to flip (tensor dims of the (1, C, *patch) input), [] for no TTA.
        tile_step_size: sliding-window step as a fraction of the patch.
        transpose_forward: the plans' axis order (SimpleITK (z, y, x) axes -> network axes).
    """

    patch_size: list[int]
    norm: list[int]
    clip_low: list[float]
    clip_high: list[float]
    mean: list[float]
    std: list[float]
    mirror_axes: list[list[int]]
    transpose_forward: list[int]
    transpose_backward: list[int]

    def __init__(self, network: nn.Module, patch_size: list[int], gaussian: Tensor, norm: list[int],
                 clip_low: list[float], clip_high: list[float], mean: list[float], std: list[float],
                 mirror_axes: list[list[int]], tile_step_size: float, transpose_forward: list[int],
                 num_classes: int) -> None:
        super().__init__()
        self.network = network
        self.patch_size = patch_size
        self.register_buffer("gaussian", gaussian.to(torch.float16))
        self.norm, self.clip_low, self.clip_high, self.mean, self.std = norm, clip_low, clip_high, mean, std
        self.mirror_axes = mirror_axes
        self.tile_step_size = tile_step_size
        self.transpose_forward = transpose_forward
        self.transpose_backward = [transpose_forward.index(i) for i in range(len(transpose_forward))]
        self.num_classes = num_classes
        self.num_input_channels = len(norm)

    def _steps(self, size: int, patch: int) -> list[int]:
        if size <= patch:
            return [0]
        target = patch * self.tile_step_size
        n = int(torch.ceil(torch.tensor((size - patch) / target, dtype=torch.float64)).item()) + 1
        step = float(size - patch) / float(n - 1)
        out: list[int] = []
        for i in range(n):
            out.append(int(torch.round(torch.tensor(step * i, dtype=torch.float64)).item()))
        return out

    def _normalise(self, x: Tensor) -> Tensor:
        chans: list[Tensor] = []
        for c in range(x.shape[0]):
            v = x[c]
            code = self.norm[c]
            if code == 1:
                v = (v.clamp(self.clip_low[c], self.clip_high[c]) - self.mean[c]) / max(self.std[c], 1e-8)
            elif code == 2:
                m = v.mean()
                s = v.std(unbiased=False)
                v = (v - m) / torch.clamp(s, min=1e-8)
            chans.append(v)
        return torch.stack(chans)

    def _predict_window(self, x: Tensor) -> Tensor:
        pred = self.network(x)
        for axes in self.mirror_axes:
            pred = pred + torch.flip(self.network(torch.flip(x, axes)), axes)
        if len(self.mirror_axes) > 0:
            pred = pred / float(len(self.mirror_axes) + 1)
        return pred

    def _case(self, data: Tensor) -> Tensor:
        """(C, *spatial) in the network's axes -> (K, *spatial) float32 probabilities."""
        shape = data.shape[1:]
        nonzero = (data != 0).any(0)
        lo: list[int] = []
        hi: list[int] = []
        profiles = [nonzero.any(2).any(1), nonzero.any(2).any(0), nonzero.any(1).any(0)]  # along z, y, x
        for d in range(3):
            hit = torch.nonzero(profiles[d]).flatten()
            if hit.numel() == 0:
                lo.append(0)
                hi.append(shape[d])
            else:
                lo.append(int(hit[0].item()))
                hi.append(int(hit[-1].item()) + 1)
        crop = data[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        x = self._normalise(crop.float())
        csize = x.shape[1:]
        pads: list[int] = []
        below: list[int] = []
        for d in range(2, -1, -1):  # F.pad order: last axis first
            diff = max(self.patch_size[d] - csize[d], 0)
            pads += [diff // 2, diff - diff // 2]
        for d in range(3):
            below.append(max(self.patch_size[d] - csize[d], 0) // 2)
        x = torch.nn.functional.pad(x, pads, mode="constant", value=0.0)
        size = x.shape[1:]
        logits = torch.zeros([self.num_classes, size[0], size[1], size[2]], dtype=torch.float16, device=x.device)
        counts = torch.zeros([size[0], size[1], size[2]], dtype=torch.float16, device=x.device)
        p0, p1, p2 = self.patch_size[0], self.patch_size[1], self.patch_size[2]
        for s0 in self._steps(size[0], p0):
            for s1 in self._steps(size[1], p1):
                for s2 in self._steps(size[2], p2):
                    win = x[:, s0:s0 + p0, s1:s1 + p1, s2:s2 + p2][None].contiguous()
                    pred = self._predict_window(win)[0] * self.gaussian
                    logits[:, s0:s0 + p0, s1:s1 + p1, s2:s2 + p2] += pred
                    counts[s0:s0 + p0, s1:s1 + p1, s2:s2 + p2] += self.gaussian
        logits = logits / counts
        logits = logits[:, below[0]:below[0] + csize[0], below[1]:below[1] + csize[1], below[2]:below[2] + csize[2]]
        probs = torch.zeros([self.num_classes, shape[0], shape[1], shape[2]], dtype=torch.float32, device=data.device)
        probs[0] = 1.0
        probs[:, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = torch.softmax(logits.float(), 0)
        return probs

    def forward(self, image: Tensor) -> Tensor:
        if image.dim() != 5 or image.shape[1] != self.num_input_channels:
            raise ValueError("expected (B, C, W, H, D) with the trained number of channels [CT, PET on the CT grid]")
        out: list[Tensor] = []
        tf = self.transpose_forward
        tb = self.transpose_backward
        for b in range(image.shape[0]):
            x = image[b].permute(0, 3, 2, 1)  # MONAI (C, W, H, D) -> SimpleITK (C, Z, Y, X)
            x = x.permute(0, tf[0] + 1, tf[1] + 1, tf[2] + 1)
            probs = self._case(x).permute(0, tb[0] + 1, tb[1] + 1, tb[2] + 1).permute(0, 3, 2, 1)
            out.append(probs)
        return torch.stack(out)


def _mirror_combinations(axes) -> list[list[int]]:
    if not axes:
        return []
    dims = [int(a) + 2 for a in axes]
    return [list(c) for i in range(len(dims)) for c in itertools.combinations(dims, i + 1)]


def script_bundle_net(net, use_mirroring: bool = True, tile_step_size: float = 0.5) -> torch.jit.ScriptModule:
    """A :class:`~nnunet_plugins.bundle.network.HecMambaBundleNet` (weights loaded) -> scripted
    :class:`NnUNetCaseInference` on CPU. Raises ``ValueError`` for a plans/dataset layout it does not replay."""
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    from nnunet_plugins.ops.backend import use_backend

    pm, cm, lm = net.plans_manager, net.configuration_manager, net.label_manager
    if lm.has_regions or cm.previous_stage_name is not None:
        raise ValueError("model.ts export does not cover region-based or cascade configurations")
    schemes = list(cm.normalization_schemes)
    if any(cm.use_mask_for_norm):
        raise ValueError(f"model.ts export does not cover use_mask_for_norm={cm.use_mask_for_norm}")
    unknown = [s for s in schemes if s not in NORM_CODES]
    if unknown:
        raise ValueError(f"model.ts export does not cover normalisation {unknown}")
    props = pm.foreground_intensity_properties_per_channel
    stats = [props.get(str(c), {}) for c in range(len(schemes))]
    patch = [int(p) for p in cm.patch_size]
    network = net.network.cpu().eval()
    example = torch.zeros(1, len(schemes), *patch)
    with torch.no_grad(), use_backend("torch"):
        traced = torch.jit.trace(network, example, check_trace=False)
        probe = torch.randn(1, len(schemes), *patch, generator=torch.Generator().manual_seed(0))
        err = (traced(probe) - network(probe)).abs().max().item()
    if err > 1e-3:
        raise RuntimeError(f"traced network differs from the eager one by {err:.2e}")
    gaussian = compute_gaussian(tuple(patch), sigma_scale=1.0 / 8, value_scaling_factor=10, device=torch.device("cpu"))
    module = NnUNetCaseInference(
        traced, patch, gaussian, [NORM_CODES[s] for s in schemes],
        [float(s.get("percentile_00_5", 0.0)) for s in stats], [float(s.get("percentile_99_5", 0.0)) for s in stats],
        [float(s.get("mean", 0.0)) for s in stats], [float(s.get("std", 1.0)) for s in stats],
        _mirror_combinations(net.mirroring_axes) if use_mirroring else [], float(tile_step_size),
        [int(t) for t in pm.transpose_forward], int(lm.num_segmentation_heads))
    return torch.jit.script(module)


def save_model_ts(net, path: str | Path, extra_files: dict[str, str] | None = None, use_mirroring: bool = True,
                  tile_step_size: float = 0.5) -> dict:
    """Script ``net`` (see :func:`script_bundle_net`) and save it to ``path`` with ``extra_files`` (MONAI's
    ``ckpt_export`` habit: ``metadata.json`` and ``inference.json`` embedded). Returns the export settings."""
    settings = {"use_mirroring": bool(use_mirroring), "tile_step_size": float(tile_step_size),
                "scan_backend": "torch (scripted chunk loop)"}
    scripted = script_bundle_net(net, use_mirroring=use_mirroring, tile_step_size=tile_step_size)
    extra = {k: v for k, v in (extra_files or {}).items()}
    extra["export_settings.json"] = json.dumps(settings)
    torch.jit.save(scripted, str(path), _extra_files=extra)
    return settings
