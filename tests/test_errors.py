"""fastevalcb.errors is a leaf: importing it loads nothing else of the package, and every
error class is the same object wherever it is imported from."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import fastevalcb
from fastevalcb import errors


def test_importing_errors_loads_no_other_module_of_the_package():
    code = (
        "import sys, fastevalcb.errors; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'fastevalcb'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['fastevalcb',", "'fastevalcb.errors']"], out.stdout


def test_errors_imports_nothing_of_the_package():
    tree = ast.parse(Path(errors.__file__).read_text())
    imported = [
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    ]
    assert not [name for name in imported if name and name.split(".")[0] == "fastevalcb"]
    assert imported == ["__future__"]


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_is_public_and_the_same_class_everywhere(name):
    assert getattr(fastevalcb, name) is getattr(errors, name)
    assert name in fastevalcb.__all__


def test_the_worker_error_is_still_importable_from_distributed():
    from fastevalcb import distributed

    assert distributed.FastEvalWorkerError is errors.FastEvalWorkerError
