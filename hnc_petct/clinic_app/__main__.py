"""``python -m hnc_petct.clinic_app -i STUDY_DIR -o OUT [-m MODELS]``: run the clinic app on one study."""

from __future__ import annotations

from .app import ClinicApp, main

if __name__ == "__main__":
    raise SystemExit(main(ClinicApp))
