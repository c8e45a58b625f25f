"""The main job: cohort folder -> validated data -> segmentation, RFS and DM models -> report.

``run_pipeline`` runs the stages in order with a resumable state file (``OUT/run_state.json``);
each stage lives in its own module and imports its model family lazily.
"""

from hnc_petct.pipeline.runner import STAGES, run_pipeline

__all__ = ["STAGES", "run_pipeline"]
