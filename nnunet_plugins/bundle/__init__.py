"""HecMamba as a MONAI bundle (``bundles/hecmamba_petct_segmentation``).

* :mod:`.network`: :class:`~.network.HecMambaBundleNet`, a MONAI-style network (``forward(image) -> class probabilities``)
  around nnU-Net's own ``nnUNetPredictor`` (nnU-Net's preprocessing, sliding window and resampling back);
* :mod:`.export`: a trained nnU-Net fold -> the bundle's ``models/`` (MONAI's ``convert_nnunet_to_monai_bundle``
  layout plus ``models/model.pt``, the file MONAI's ``CheckpointLoader`` and MONAI Deploy load);
* :mod:`.transforms`: the datalist of an nnU-Net image folder and the atomic label-map writer.

Imports stay lazy: nothing here is loaded by the nnU-Net trainer hook.
"""
