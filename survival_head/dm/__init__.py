"""Distant-metastasis (DM) model after Tong et al.: Swin (or 3D ResNet) deep features of a CT crop with
tumour / peritumoral mask channels, fold-selected radiomics and clinical data, fused by an MLP.

Modules: ``regions`` (body, tumour, peritumoral ring), ``transforms`` (MONAI crop transforms),
``network`` (encoders, fusion net), ``data`` (cohort -> tensors), ``training`` (two-stage fold fit,
CV, saved model), ``metrics``, ``workflows`` (train / predict / evaluate / bundle entry points),
``analysis`` (modality ablations, subgroups). Kept import-light: radiomics workers import ``regions`` only.
"""
