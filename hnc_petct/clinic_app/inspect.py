"""``python -m hnc_petct.clinic_app.inspect -i STUDY_DIR -o OUT``: the app's inputs as NIfTI, no model."""

from __future__ import annotations

from .app import InspectApp, main

if __name__ == "__main__":
    raise SystemExit(main(InspectApp))
