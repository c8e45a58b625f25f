"""Resumable run state: per stage its status, input fingerprint, device, time taken and outputs."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from hnc_core.io import write_json_atomic

STATE_FILE = "run_state.json"


@dataclass
class RunState:
    """``OUT/run_state.json``: per-stage status, seconds, outputs; the commands that ran."""

    path: Path
    stages: dict = field(default_factory=dict)
    commands: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)

    @classmethod
    def load(cls, out_dir: Path) -> "RunState":
        path = Path(out_dir) / STATE_FILE
        if path.is_file():
            d = json.loads(path.read_text())
            return cls(path, d.get("stages", {}), d.get("commands", []), d.get("meta", {}))
        return cls(path)

    def save(self) -> None:
        write_json_atomic(self.path, {"meta": self.meta, "stages": self.stages, "commands": self.commands})

    def is_done(self, stage: str) -> bool:
        return self.stages.get(stage, {}).get("status") == "done"

    def record(self, stage: str, status: str, seconds: float, outputs: dict | None = None,
               error: str | None = None, fingerprint: dict | None = None, device: str | None = None,
               reason: str | None = None) -> None:
        """Status ``running`` (written at start: left behind by an interrupted run), ``done`` or ``failed``;
        ``fingerprint`` of the stage's inputs, the torch ``device`` it ran on, ``reason`` it ran."""
        self.stages[stage] = {"status": status, "seconds": round(seconds, 2), "outputs": outputs or {},
                              "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "fingerprint": fingerprint or {},
                              "device": device, "reason": reason, **({"error": error} if error else {})}
        self.save()

    def add_command(self, stage: str, argv: list[str]) -> None:
        self.commands.append({"stage": stage, "command": " ".join(argv)})
        self.save()
