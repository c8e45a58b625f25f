"""Outcome models on HECKTOR-layout PET/CT: recurrence-free survival (RFS) and distant metastasis (DM).

Subpackages: ``features`` (clinical encoding, image features), ``evaluation`` (metrics, bootstrap),
``io`` (verified checkpoints). Model-specific code lives in its own subpackage.
"""
