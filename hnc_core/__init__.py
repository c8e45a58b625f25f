"""Data layer of hnc-petct: HECKTOR-layout reader and validation, synthetic cohort, schema, atomic I/O.

It lives in its own small package because both model families depend on it
(``nnunet_plugins`` for segmentation, ``survival_head`` for outcome models) and
neither should import the other. It imports neither of them, nor the application
package ``hnc_petct`` (``tests/test_layering.py`` enforces this).
"""

from __future__ import annotations

__version__ = "0.1.0"
