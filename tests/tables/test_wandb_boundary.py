"""Every wandb internal lives in fastevalcb/tables/_wandb.py: no other module of the package
imports ``wandb.sdk`` / ``wandb.proto`` / ``wandb.util`` or reads a private name of a wandb
object."""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

PACKAGE = pathlib.Path(importlib.import_module("fastevalcb").__file__).parent
BOUNDARY = PACKAGE / "tables" / "_wandb.py"
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if p != BOUNDARY)

# wandb's public modules; anything else under ``wandb.`` is internal.
PUBLIC_WANDB_MODULES = {
    "wandb",
    "wandb.data_types",
    "wandb.integration.keras",
    "wandb.plot",
    "wandb.errors",
    "wandb.apis",
}

# Private names of wandb objects that fastevalcb used before the boundary existed: none of
# them may appear outside _wandb.py, whatever object they are read from.
KNOWN_WANDB_PRIVATES = {
    "_path",
    "_sha256",
    "_size",
    "_is_tmp",
    "_extension",
    "_width",
    "_height",
    "_masks",
    "_boxes",
    "_classes",
    "_caption",
    "_grouping",
    "_image",
    "_file_type",
    "_val",
    "_key",
    "_class_labels",
    "_class_set",
    "_free_ram",
    "_client_id",
    "_added_local_paths",
    "_added_objs",
    "_add_local_file",
    "_artifact_target",
    "_set_artifact_target",
    "_get_artifact_entry_ref_url",
    "_tmp_dir",
    "_teardown_hooks",
    "_is_finished",
    "_column_types",
    "_log_type",
    "_write_artifact_manifest_file",
    "_backend",
    "_manifest",
    "_json_helper",
    "_dtypes",
    "_DIGEST_HEADER",
    "_xxh128",
}


def _own_names() -> set[str]:
    """Private names fastevalcb itself defines outside _wandb.py: functions, classes,
    module names and attributes it assigns on ``self``."""
    names: set[str] = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[0])
    return names


# Public API spelled with an underscore (NamedTuple's methods, sys._getframe).
NOT_PRIVATE = {"_replace", "_asdict", "_fields", "_make", "_field_defaults", "_getframe"}


def _violations() -> list[str]:
    own = (_own_names() | NOT_PRIVATE) - KNOWN_WANDB_PRIVATES
    found = []
    for path in SOURCES:
        rel = path.relative_to(PACKAGE.parent)
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.startswith("wandb")
                and node.module not in PUBLIC_WANDB_MODULES
            ):
                found.append(f"{rel}:{node.lineno}: from {node.module} import ...")
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("wandb.") and alias.name not in PUBLIC_WANDB_MODULES:
                        found.append(f"{rel}:{node.lineno}: import {alias.name}")
            elif (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                base = ast.unparse(node.value)
                if node.attr in KNOWN_WANDB_PRIVATES or (
                    node.attr not in own and base not in ("self", "cls")
                ):
                    found.append(f"{rel}:{node.lineno}: {base}.{node.attr}")
    return found


def test_no_module_but_wandb_py_touches_a_wandb_internal():
    assert _violations() == []


def test_the_check_finds_a_private_read_and_an_internal_import():
    """The scan is not vacuous: a module that reads ``image._masks`` or imports
    ``wandb.sdk`` is reported."""
    bad = PACKAGE / "tables" / "_boundary_probe.py"
    bad.write_text(
        "from wandb.sdk.data_types import _dtypes\ndef f(image):\n    return image._masks\n"
    )
    SOURCES.append(bad)
    try:
        found = _violations()
    finally:
        SOURCES.remove(bad)
        bad.unlink()
    assert any("from wandb.sdk.data_types import" in v for v in found), found
    assert any("image._masks" in v for v in found), found


@pytest.mark.parametrize("module", ["fastevalcb.errors"])
def test_errors_is_a_leaf(module):
    """``fastevalcb.errors`` imports nothing of the package (no cycle through it)."""
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(not (getattr(n, "module", "") or "").startswith("fastevalcb") for n in imports)
    assert all(
        not a.name.startswith("fastevalcb")
        for n in imports
        if isinstance(n, ast.Import)
        for a in n.names
    )
