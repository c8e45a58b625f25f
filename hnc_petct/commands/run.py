"""``hnc-petct run``: the main job, resumable stage by stage."""

from __future__ import annotations

import argparse

STAGE_NAMES = ["validate", "segmentation", "rfs", "dm", "report"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Run the main job on a HECKTOR-layout cohort: validate -> segmentation (nnU-Net + HecMamba) -> "
        "RFS fusion model -> distant-metastasis model -> report (OUT_DIR/report/index.html and index.md).\n"
        "A re-run reuses a finished stage only while the fingerprint of its inputs (its options, the package "
        "version, the cohort files, the stages it consumes) is unchanged, and redoes stale stages and their "
        "downstream stages, saying why (state in OUT_DIR/run_state.json); --force STAGE redoes one."
    )
    p.add_argument("cohort_dir", metavar="COHORT_DIR", help="cohort folder in the HECKTOR 2025 layout")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (created; finished stages with unchanged inputs are reused)")
    p.add_argument("--force", action="append", default=[], choices=STAGE_NAMES, metavar="STAGE",
                   help=f"redo this stage even if finished (repeatable; one of {', '.join(STAGE_NAMES)})")
    p.add_argument("--skip", action="append", default=[], choices=STAGE_NAMES[1:4], metavar="STAGE",
                   help="leave out a model stage (segmentation, rfs or dm)")
    p.add_argument("--full-schedule", action="store_true",
                   help="train HecMamba with nnU-Net's full schedule (1000 epochs; GPU) instead of the CPU budget")
    p.add_argument("--seg-trainer", default=None, metavar="TRAINER",
                   help="nnU-Net trainer class for segmentation (default: HecMambaTrainer_cpu, or HecMambaTrainer "
                        "with --full-schedule)")
    p.add_argument("--dm-masks", choices=["label", "predicted"], default="label",
                   help="tumour masks for the DM model: ground-truth labels or HecMamba predictions")
    p.add_argument("--image-size", type=int, default=None,
                   help="side of the RFS and DM image crops in voxels (paper: 96; default, CPU budget: 32)")
    p.add_argument("--max-epochs", type=int, default=None,
                   help="epochs per fold for the RFS and DM networks (default: RFS 20 with the frozen backbone, DM 2)")
    p.add_argument("--n-folds", type=int, default=None, help="cross-validation folds of the RFS and DM models (5)")
    p.add_argument("--train-backbone", action="store_true",
                   help="train the RFS ResNet-18 end to end (default on CPU: frozen backbone features)")
    p.add_argument("--radiomics-params", default=None, metavar="YAML|fast",
                   help="pyradiomics params for the DM model (default: shipped 1,502 features/region; "
                        "'fast': original image only, 107/region)")
    p.add_argument("--workers", type=int, default=2, help="worker processes for radiomics")
    p.add_argument("--device", default="cpu",
                   help="torch device of every stage: nnU-Net, the RFS and DM bundles and their ablations (cpu, cuda)")


def main(args: argparse.Namespace) -> int:
    from hnc_petct.pipeline import run_pipeline
    from hnc_petct.pipeline.context import RunOptions

    given = {"rfs_image_size": args.image_size, "dm_image_size": args.image_size, "rfs_max_epochs": args.max_epochs,
             "dm_max_epochs": args.max_epochs, "n_folds": args.n_folds}  # None: RunOptions' (RFS config's) default
    options = RunOptions(
        seg_schedule="full" if args.full_schedule else "cpu", dm_masks=args.dm_masks,
        **{k: v for k, v in given.items() if v is not None},
        workers=args.workers, device=args.device, skip=tuple(args.skip), seg_trainer=args.seg_trainer,
        radiomics_params=args.radiomics_params, freeze_backbone=not args.train_backbone,
    )
    result = run_pipeline(args.cohort_dir, args.out_dir, options, force=tuple(args.force))
    failed = [k for k, v in result["stages"].items() if v["status"] == "failed"]
    if failed:
        print(f"stages failed: {', '.join(failed)} (details in {args.out_dir}/run_state.json)")
    return 1 if failed else 0
