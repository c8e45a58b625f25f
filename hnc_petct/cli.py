"""``hnc-petct``: one entry point, one subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``main(args) -> int``;
modules are imported only when their subcommand runs, so ``--help`` stays fast and a heavy
dependency of one job never slows another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> (module, one-line help). Names are public interface: scripts and docs rely on them.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("hnc_petct.commands.synth", "write a synthetic HECKTOR-layout PET/CT cohort with known ground truth"),
    "validate": ("hnc_petct.commands.validate", "check a HECKTOR-layout cohort and list every problem per patient"),
    "nnunet-convert": ("nnunet_plugins.commands.convert", "convert a HECKTOR-layout cohort to an nnU-Net v2 raw dataset"),
    "seg-evaluate": ("nnunet_plugins.commands.evaluate", "segmentation metrics: DSC, HD95, surface Dice, GTVn F1"),
    "run": ("hnc_petct.commands.run", "the main job: validate, segment, RFS and DM models, HTML report"),
    "export-bundles": ("hnc_petct.commands.export_bundles",
                       "the three trained bundles of a finished run, for the clinic app / MONAI Deploy"),
}

DESCRIPTION = """\
Head-and-neck cancer PET/CT analysis: HecMamba segmentation (nnU-Net v2), recurrence-free survival and
distant-metastasis models (MONAI bundles), on HECKTOR-layout data.

Typical use:
  hnc-petct synth --n 40 --seed 0 cohort/     # synthetic cohort with known ground truth
  hnc-petct validate cohort/                  # per-patient problems; --json for machines
  hnc-petct run cohort/ out/                  # everything, resumable; report in out/report/index.html
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hnc-petct", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    from hnc_core import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        p.set_defaults(_module=module)
        _lazy_arguments(p, module)
    return parser


def _lazy_arguments(parser: argparse.ArgumentParser, module: str) -> None:
    # Arguments are declared by the module; importing it only to declare them is cheap by contract
    # (command modules import their heavy dependencies inside main()).
    importlib.import_module(module).add_arguments(parser)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
