"""nnU-Net v2 plugins: HecMamba network and trainers, selective-scan ops, HECKTOR conversion, evaluation.

Kept import-light on purpose: the ``.pth`` startup hook and ``hnc-petct --help`` import this package.
"""

from __future__ import annotations
