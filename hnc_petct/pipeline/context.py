"""What every stage gets: folders, options, the run state and a command runner that logs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from hnc_petct.pipeline.state import RunState
from survival_head.rfs.config import CPU_BUDGET as RFS_CPU

log = logging.getLogger("hnc_petct.pipeline")


class StageError(RuntimeError):
    """A stage could not finish; the message says why and which file to look at."""


@dataclass
class RunOptions:
    """User-facing knobs of ``hnc-petct run`` (CPU-sized defaults)."""

    seg_schedule: str = "cpu"        # "cpu": short HecMamba schedule; "full": nnU-Net's 1000 epochs
    seg_fold: int = 0
    seg_trainer: str | None = None   # override the schedule's trainer (any nnU-Net trainer class name)
    dm_masks: str = "label"          # "label" or "predicted" (HecMamba predictions)
    rfs_image_size: int = RFS_CPU.image_size      # RFS defaults: survival_head.rfs.config.CPU_BUDGET
    rfs_max_epochs: int = RFS_CPU.max_epochs      # frozen-backbone head training is cheap (~1 min for 40 patients)
    rfs_learning_rate: float = RFS_CPU.lr
    dm_image_size: int = 32
    dm_max_epochs: int = 2          # Swin image-branch epochs per fold (CPU budget)
    dm_window_size: int = 4         # Swin window; 4 suits 32³ crops (7 only adds padding there)
    radiomics_params: str | None = None  # None: the shipped 1,502-feature/region config; "fast": 107 original
    n_folds: int = RFS_CPU.n_folds
    freeze_backbone: bool = RFS_CPU.freeze_backbone  # CPU budget: frozen ResNet-18 features for RFS
    n_boot: int = RFS_CPU.n_boot
    workers: int = 2
    device: str = "cpu"
    skip: tuple = ()


@dataclass
class StageContext:
    cohort_dir: Path
    out_dir: Path
    options: RunOptions
    state: RunState
    outputs: dict = field(default_factory=dict)  # outputs of finished stages, by stage name
    previous: dict = field(default_factory=dict)  # the running stage's record from the last run (or {})
    fingerprint: dict = field(default_factory=dict)  # the running stage's input fingerprint

    def resuming(self) -> bool:
        """True when the running stage was interrupted or failed last time with the same inputs
        (so partial work it left, e.g. nnU-Net's ``checkpoint_latest.pth``, is valid to continue)."""
        return (self.previous.get("status") in ("running", "failed")
                and self.previous.get("fingerprint") == self.fingerprint)

    def stage_dir(self, name: str) -> Path:
        d = self.out_dir / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def run(self, stage: str, argv: list[str], env: dict | None = None, log_file: Path | None = None) -> None:
        """Run a command, record it for the report, stream its output to a log file."""
        self.state.add_command(stage, argv)
        full_env = {**os.environ, **(env or {})}
        log_file = log_file or (self.stage_dir(stage) / "commands.log")
        log.info("[%s] $ %s", stage, " ".join(argv))
        with open(log_file, "a") as fh:
            fh.write(f"$ {' '.join(argv)}\n")
            fh.flush()
            proc = subprocess.run(argv, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            tail = log_file.read_text().splitlines()[-15:]
            raise StageError(f"command failed (exit {proc.returncode}): {' '.join(argv)}\n"
                             f"last lines of {log_file}:\n" + "\n".join(tail))


def python_module(*args: str) -> list[str]:
    """argv for ``python -m ...`` with the interpreter running this pipeline."""
    return [sys.executable, "-m", *args]


def venv_script(name: str) -> str:
    """Path of a console script installed beside this interpreter (nnUNetv2_train, ...)."""
    cand = Path(sys.executable).with_name(name)
    return str(cand) if cand.exists() else name
