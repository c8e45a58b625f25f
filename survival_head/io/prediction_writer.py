"""Base of the outcome bundles' prediction writers (Ignite handlers of ``inference.json`` / ``evaluate.json``).

The RFS writer (:class:`survival_head.rfs.bundle_workflow.Task2RiskWriter`) and the DM writer
(:class:`survival_head.dm.bundle_workflow.DMPredictionWriter`) share the output-folder guard, the event wiring,
the ``finish`` step of ``run`` and the start of every write (``failures.json``, then the ``predictions`` /
``predictions.partial`` choice); each writes its own table.
"""

from __future__ import annotations

from pathlib import Path

from survival_head.io.bundle_paths import guarded as _guarded


class PredictionWriter:
    """Collect one row per predicted patient; at completion write the outputs (subclasses: ``collect``,
    ``write``, which starts with :meth:`begin_write`).

    Parameters
    ----------
    output_dir : output folder (checked writable and not inside ``protected_dirs``).
    failures : failure records to report (e.g. ``@dataset.failures``).
    warnings : PatientID -> warning text, written beside the prediction.
    protected_dirs : input folders the outputs must not go into; the first is the cohort (``source``).
    """

    written = False

    def __init__(self, output_dir: str | Path, failures: list[dict] | None = None,
                 warnings: dict[str, str] | None = None, protected_dirs: list | tuple = ()):
        from hnc_core.guards import check_output_dir

        self.output_dir = _guarded(check_output_dir)(output_dir, protected_dirs=list(protected_dirs))
        self.failures = failures if failures is not None else []
        self.warnings = warnings or {}
        self.source = protected_dirs[0] if protected_dirs else self.output_dir
        self.rows: list[dict] = []

    def reset(self) -> None:
        """Forget the rows of an earlier run of the engine."""
        self.rows.clear()
        self.written = False

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, lambda e: self.reset())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def finish(self) -> None:
        """``run``'s last step: write the outputs if the evaluator did not (an empty cohort never completes an
        epoch), so a run that predicted nothing still lists its failures and exits non-zero."""
        if not self.written:
            self.write()

    def collect(self, engine) -> None:
        raise NotImplementedError

    def write(self, engine=None):
        raise NotImplementedError

    def begin_write(self, n_predicted: int) -> str:
        """Mark the outputs written, write ``failures.json`` and return the predictions file suffix: ``""``, or
        ``".partial"`` when a fuller earlier ``predictions.json`` must not be replaced; nothing predicted ends
        the run (exit 1, after ``failures.json``)."""
        from hnc_core.guards import guarded_prediction_outputs
        from hnc_core.io import write_json_atomic

        self.written = True
        write_json_atomic(self.output_dir / "failures.json", self.failures)
        return _guarded(guarded_prediction_outputs)(self.output_dir, n_predicted, self.failures, self.source)
