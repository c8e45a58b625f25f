"""Subcommands of ``hnc-petct``: each module has ``add_arguments(parser)`` and ``main(args) -> int``.

Keep module top-level imports light: heavy libraries are imported inside ``main``.
"""
