"""Zero-configuration trainer discovery for ``nnUNetv2_train`` / ``nnUNetv2_predict``.

nnU-Net 2.x finds a trainer by name in its own package and then in the folders listed in the
``nnUNet_extTrainer`` environment variable (``os.pathsep``-separated, modules imported by bare name).
The wheel ships ``hnc_petct_nnunet.pth`` into site-packages; Python's ``site`` runs its single line at
start-up, which imports this module. :func:`register` appends our trainers folder to
``nnUNet_extTrainer`` for the current process (inherited by its children), keeping any value the user
set. It is idempotent, imports nothing heavy (no torch, no nnU-Net) and never raises.

Opt out with ``HNC_PETCT_NO_TRAINER_HOOK=1``.
"""

from __future__ import annotations

import os

ENV = "nnUNet_extTrainer"
OPT_OUT = "HNC_PETCT_NO_TRAINER_HOOK"


def trainers_folder() -> str:
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "trainers")


def register() -> None:
    """Append our trainers folder to ``nnUNet_extTrainer`` unless already listed or opted out."""
    try:
        if os.environ.get(OPT_OUT, "").strip() not in ("", "0"):
            return
        folder = trainers_folder()
        parts = [p for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]
        if any(os.path.normcase(os.path.abspath(p)) == os.path.normcase(folder) for p in parts):
            return
        os.environ[ENV] = os.pathsep.join(parts + [folder])
    except Exception:  # a start-up hook must never break the interpreter
        pass


register()
