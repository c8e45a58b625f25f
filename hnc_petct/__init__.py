"""hnc-petct application layer: the ``hnc-petct`` CLI and the main job (``hnc-petct run``).

Layering (enforced by ``tests/test_layering.py``)::

    hnc_petct (application)  ->  nnunet_plugins, survival_head (model families)  ->  hnc_core (data layer)

The application imports the model families lazily, one stage or command at a time.
"""

from __future__ import annotations

from hnc_core import __version__

__all__ = ["__version__"]
