"""All-or-nothing output folder: the app writes into a staging folder inside OUT and moves it in at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .errors import StudyInputError

# What a run writes to OUT; one already there means OUT holds an earlier result.
OUTPUT_NAMES = ("report.json", "seg", "sr", "inputs")


class Staging:
    """``with Staging(out) as st: ... write under st.path ...; st.commit()``.

    ``commit`` moves every staged entry into ``out`` (``report.json`` last, so its presence marks a
    complete result); leaving the block without ``commit`` deletes the staging folder.
    """

    def __init__(self, out_dir: str | os.PathLike):
        self.out = Path(out_dir)
        self.path: Path | None = None

    def __enter__(self) -> "Staging":
        self.out.mkdir(parents=True, exist_ok=True)
        taken = [n for n in OUTPUT_NAMES if (self.out / n).exists()]
        if taken:
            raise StudyInputError(f"output folder {self.out} already holds {', '.join(taken)} from an earlier run; "
                                  "give an empty or new folder (nothing is overwritten)")
        self.path = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.out))
        return self

    def commit(self) -> list[Path]:
        assert self.path is not None
        entries = sorted(self.path.iterdir(), key=lambda p: p.name == "report.json")
        moved = []
        for p in entries:
            dst = self.out / p.name
            os.replace(p, dst)
            moved.append(dst)
        return moved

    def __exit__(self, *exc) -> None:
        if self.path is not None and self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
