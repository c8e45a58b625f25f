"""nnU-Net v2 trainers for HecMamba. One class per module, module name = class name (nnU-Net looks
trainers up by bare module name in ``nnUNet_extTrainer`` folders; see :mod:`nnunet_plugins._zeroconf`)."""
