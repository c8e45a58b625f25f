"""Command-line spelling shared by every tool: flags use hyphens; old underscore spellings keep working."""

from __future__ import annotations

import argparse


def add_underscore_aliases(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Accept ``--radiomics_cache`` for ``--radiomics-cache`` (every hyphenated long flag), hidden from ``--help``.

    Call after all arguments are added. Scripts written against the earlier underscore spellings keep working.
    """
    for action in list(parser._actions):
        for opt in list(action.option_strings):
            if opt.startswith("--") and "-" in opt[2:]:
                alias = "--" + opt[2:].replace("-", "_")
                parser._option_string_actions.setdefault(alias, action)
    return parser
