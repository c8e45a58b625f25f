"""A trained HecMamba nnU-Net fold as a MONAI network: ``forward(image) -> class probabilities``.

MONAI's own wrapper (``monai.apps.nnunet.nnunet_bundle.ModelnnUNetWrapper``, MONAI 1.6.1) looks trainers up only
inside ``nnunetv2`` and calls the pre-2.7 ``build_network_architecture`` signature, so it cannot rebuild a
``HecMambaTrainer`` fold. This class reads the same bundle layout (MONAI's ``convert_nnunet_to_monai_bundle``:
``models/plans.json``, ``models/dataset.json``, ``models/nnunet_checkpoint.pth``), finds the trainer with nnU-Net's
own lookup (``nnUNet_extTrainer``, set for our trainers by the package's start-up hook) and hands inference to
nnU-Net's ``nnUNetPredictor``: nnU-Net's cropping, normalisation, resampling, Gaussian sliding window, mirroring
and resampling back, exactly as ``nnUNetv2_predict`` runs them.

The weights are the registered sub-module ``network``: ``state_dict()`` keys are ``network.<nnU-Net key>``, the
layout of ``models/model.pt`` that MONAI's ``CheckpointLoader`` and MONAI Deploy's bundle operator load (strict).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["HecMambaBundleNet", "load_nnunet_checkpoint", "nnunet_safe_globals", "spacing_from_affine"]


def nnunet_safe_globals() -> list:
    """The non-tensor types nnU-Net checkpoints hold (numpy scalars and dtypes), for ``weights_only=True``."""
    return [np._core.multiarray.scalar, np.dtype, *{type(np.dtype(t)) for t in ("float32", "float64", "int64")}]


def load_nnunet_checkpoint(path: str | Path) -> dict:
    """An nnU-Net checkpoint, ``weights_only=True``: tensors plus the numpy scalars/dtypes nnU-Net stores."""
    with torch.serialization.safe_globals(nnunet_safe_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)


def spacing_from_affine(affine) -> list[float]:
    """Voxel spacing (mm) along the array axes of an image whose (4, 4) affine maps index -> world."""
    a = np.asarray(affine.cpu() if isinstance(affine, torch.Tensor) else affine, np.float64)
    return [float(v) for v in np.linalg.norm(a[:3, :3], axis=0)]


def verify_models(models_dir: Path) -> None:
    """Check every file ``models/manifest.json`` lists against its sha256 (written by the export); a modified
    file is an error. Without a manifest (files placed by hand) a warning is logged."""
    import logging

    from hnc_core.hashing import sha256_file

    manifest = models_dir / "manifest.json"
    if not manifest.is_file():
        logging.getLogger(__name__).warning("%s: no manifest.json, weights not verified", models_dir)
        return
    for name, digest in json.loads(manifest.read_text())["files"].items():
        if not (models_dir / name).is_file():
            raise FileNotFoundError(f"{models_dir / name} listed in manifest.json is missing")
        if sha256_file(models_dir / name) != digest:
            raise RuntimeError(f"{models_dir / name} differs from the exported file (sha256 in manifest.json); "
                               f"re-export the fold")


def _trainer_class(name: str):
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        return recursive_find_trainer_class_by_name(name)
    except Exception as exc:  # nnU-Net raises when nnUNet_extTrainer does not list our folder
        import importlib

        try:
            module = importlib.import_module(f"nnunet_plugins.trainers.{name}")
        except ImportError:
            raise RuntimeError(f"trainer {name!r} of the bundle's checkpoint is neither an nnU-Net trainer nor one of "
                               f"nnunet_plugins/trainers") from exc
        return getattr(module, name)


class HecMambaBundleNet(torch.nn.Module):
    """nnU-Net fold of ``models_dir`` behind a MONAI network interface.

    Args:
        models_dir: the bundle's ``models/`` (``plans.json``, ``dataset.json``, ``nnunet_checkpoint.pth``; with the
            export's ``manifest.json`` every file, ``model.pt`` included, is checked against its sha256 first).
        use_mirroring: nnU-Net's test-time mirroring (``nnUNetv2_predict`` default; ``--disable_tta`` = False).
            The trainer's ``inference_allowed_mirroring_axes`` still apply.
        tile_step_size: sliding-window step as a fraction of the patch (nnU-Net default 0.5).
        use_gaussian: Gaussian weighting of the windows (nnU-Net default).
        device: where nnU-Net runs the network (default: the device of the weights at call time).
        verify: check ``models/manifest.json``'s sha256 first (off only while the export itself builds the files).

    ``forward(image)``: ``image`` (B, C, W, H, D) float, MONAI's layout (``LoadImaged`` + ``EnsureChannelFirstd``
    of the CT and the PET resampled onto the CT grid); a ``MetaTensor`` affine gives the voxel spacing, a plain
    tensor is taken to be at the trained spacing. Returns (B, K, W, H, D) float32 class probabilities (K = 3:
    background, GTVp, GTVn) on the input grid, with the input's metadata; the bundle's postprocessing inverts
    its ``Spacingd`` on them and takes the argmax.
    """

    def __init__(self, models_dir: str | Path, use_mirroring: bool = True, tile_step_size: float = 0.5,
                 use_gaussian: bool = True, device: str | torch.device | None = None, verify: bool = True) -> None:
        super().__init__()
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        models_dir = Path(models_dir)
        missing = [n for n in ("plans.json", "dataset.json", "nnunet_checkpoint.pth") if not (models_dir / n).is_file()]
        if missing:
            raise FileNotFoundError(f"{models_dir}: missing {missing}; export a trained fold with "
                                    f"`python -m nnunet_plugins.bundle.export FOLD_DIR BUNDLE_DIR`")
        if verify:
            verify_models(models_dir)
        self.dataset_json = json.loads((models_dir / "dataset.json").read_text())
        self.plans_manager = PlansManager(json.loads((models_dir / "plans.json").read_text()))
        ckpt = load_nnunet_checkpoint(models_dir / "nnunet_checkpoint.pth")
        self.trainer_name = str(ckpt["trainer_name"])
        self.configuration_manager = self.plans_manager.get_configuration(ckpt["init_args"]["configuration"])
        self.mirroring_axes = ckpt.get("inference_allowed_mirroring_axes")
        self.label_manager = self.plans_manager.get_label_manager(self.dataset_json)
        n_in = determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json)
        trainer = _trainer_class(self.trainer_name)
        build = trainer.build_network_architecture
        if "plans_manager" not in inspect.signature(build).parameters:
            raise RuntimeError(f"{self.trainer_name}: build_network_architecture uses the pre-2.7 signature")
        self.network = build(plans_manager=self.plans_manager, configuration_manager=self.configuration_manager,
                             num_input_channels=n_in,
                             num_output_channels=self.label_manager.num_segmentation_heads,
                             enable_deep_supervision=False)
        self.num_input_channels = n_in
        self.use_mirroring, self.tile_step_size, self.use_gaussian = use_mirroring, tile_step_size, use_gaussian
        self.device = None if device is None else torch.device(device)
        self._predictor = None

    def predictor(self):
        """nnU-Net's ``nnUNetPredictor`` on this module's network and weights (built on first use)."""
        from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

        device = self.device or next(self.network.parameters()).device
        if self._predictor is None or self._predictor.device != device:
            pred = nnUNetPredictor(tile_step_size=self.tile_step_size, use_gaussian=self.use_gaussian,
                                   use_mirroring=self.use_mirroring, perform_everything_on_device=device.type == "cuda",
                                   device=device, verbose=False, verbose_preprocessing=False, allow_tqdm=False)
            pred.manual_initialization(network=self.network, plans_manager=self.plans_manager,
                                       configuration_manager=self.configuration_manager, parameters=None,
                                       dataset_json=self.dataset_json, trainer_name=self.trainer_name,
                                       inference_allowed_mirroring_axes=self.mirroring_axes)
            self._predictor = pred
        # nnU-Net loads each entry of list_of_parameters before predicting: hand it this module's live weights
        self._predictor.list_of_parameters = [self.network.state_dict()]
        return self._predictor

    def predict_case(self, image_czyx: np.ndarray, spacing_zyx: list[float]) -> np.ndarray:
        """One case in nnU-Net's own layout: (C, Z, Y, X) float32 array, spacing (z, y, x) mm -> (K, Z, Y, X)
        float32 class probabilities (nnU-Net's ``save_or_return_probabilities``; their argmax is its label map)."""
        pred = self.predictor()
        _, probs = pred.predict_single_npy_array(input_image=image_czyx.astype(np.float32, copy=False),
                                                 image_properties={"spacing": list(spacing_zyx)},
                                                 save_or_return_probabilities=True)
        return np.asarray(probs, dtype=np.float32)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from monai.data import MetaTensor

        if image.ndim != 5 or image.shape[1] != self.num_input_channels:
            raise ValueError(f"expected (B, {self.num_input_channels}, W, H, D) [CT, PET on the CT grid], "
                             f"got {tuple(image.shape)}")
        if isinstance(image, MetaTensor) and image.affine is not None:
            aff = image.affine
            affines = [aff[b] if aff.ndim == 3 else aff for b in range(image.shape[0])]
            spacings = [spacing_from_affine(a) for a in affines]  # (W, H, D) order
        else:
            spacings = [list(self.configuration_manager.spacing)[::-1]] * image.shape[0]
        arr = image.detach().cpu().float().numpy()
        out = []
        for b in range(arr.shape[0]):
            # MONAI's (C, W, H, D) is SimpleITK's (C, Z, Y, X) transposed: nnU-Net runs in its reader's layout
            probs = self.predict_case(np.ascontiguousarray(arr[b].transpose(0, 3, 2, 1)), spacings[b][::-1])
            out.append(torch.from_numpy(np.ascontiguousarray(probs.transpose(0, 3, 2, 1))))
        probs = torch.stack(out).to(image.device)
        return MetaTensor(probs, meta=image.meta) if isinstance(image, MetaTensor) else probs
