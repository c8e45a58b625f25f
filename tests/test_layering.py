"""Import direction: hnc_core (data layer) <- model families <- hnc_petct (application)."""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# package -> packages it must never import (at module level or lazily inside functions)
FORBIDDEN = {
    "hnc_core": {"nnunet_plugins", "survival_head", "hnc_petct"},
    "nnunet_plugins": {"survival_head", "hnc_petct"},
    "survival_head": {"nnunet_plugins", "hnc_petct"},
}


def imported_top_levels(path: pathlib.Path) -> set[str]:
    """Top-level package names imported anywhere in ``path`` (module level or inside functions),
    including ``importlib.import_module("pkg.mod")`` calls with a literal name."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            names.add(node.args[0].value.split(".")[0])
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # dotted module paths held in tables (e.g. a lazy subcommand registry)
            head = node.value.split(".")[0]
            if "." in node.value and " " not in node.value and head in {"nnunet_plugins", "survival_head", "hnc_petct"}:
                names.add(head)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_import_direction(package: str) -> None:
    offenders = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_top_levels(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(ROOT)} imports {sorted(bad)}")
    assert not offenders, "layering violated:\n" + "\n".join(offenders)


def test_checker_sees_lazy_and_table_imports(tmp_path: pathlib.Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("def f():\n    import survival_head.rfs\nT = {'a': 'hnc_petct.commands.run'}\n")
    assert imported_top_levels(src) >= {"survival_head", "hnc_petct"}
