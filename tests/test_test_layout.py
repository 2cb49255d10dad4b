"""The test suite's own layout: packages that shadow no library, imports that go through
``tests.helpers``.

Every folder of ``tests/`` is a package (``__init__.py``), so pytest's default import mode
puts the repository root on ``sys.path``, not ``tests/`` or one of its folders: a folder of
tests never becomes a top-level module. Before, with no ``__init__.py``, ``tests/`` was on
``sys.path`` and a folder named ``jax`` was what ``import jax`` found where jax was not
installed (Keras then failed to import). The names are also kept apart from every library's,
so running a script from one of these folders cannot shadow one either.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

# Top-level modules of libraries a user or a CI leg may have, installed here or not: Keras'
# other backends and fastevalcb's dependencies and extras (pyproject.toml).
OPTIONAL_MODULES = {
    "flax",
    "hypothesis",
    "isal",
    "jax",
    "jaxlib",
    "keras",
    "keras_hub",
    "matplotlib",
    "mkdocs",
    "mypy",
    "numba",
    "numpy",
    "openvino",
    "PIL",
    "playwright",
    "psutil",
    "pycocotools",
    "pytest",
    "ruff",
    "sklearn",
    "tensorflow",
    "tf_keras",
    "torch",
    "torchvision",
    "wandb",
}


def _sources() -> list[Path]:
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts)


def _our_names() -> dict[str, Path]:
    """Every folder and module name under tests/ (but the root package's own name)."""
    names: dict[str, Path] = {}
    for path in _sources():
        for folder in path.relative_to(TESTS).parents:
            if folder != Path("."):
                names.setdefault(folder.name, TESTS / folder)
        if path.stem != "__init__":
            names.setdefault(path.stem, path)
    return names


def _library_names() -> set[str]:
    """Top-level module names of installed distributions, the standard library, the
    optional libraries above and fastevalcb's declared requirements (extras included)."""
    names = set(importlib.metadata.packages_distributions()) | set(sys.stdlib_module_names)
    names |= OPTIONAL_MODULES
    try:
        requirements = importlib.metadata.requires("fastevalcb") or []
    except importlib.metadata.PackageNotFoundError:  # run from a checkout, not installed
        requirements = []
    for requirement in requirements:
        dist = re.split(r"[\s<>=!~;\[(]", requirement, maxsplit=1)[0]
        names.add(dist.replace("-", "_").lower())
    return names


def test_every_test_folder_is_a_package():
    folders = {path.parent for path in _sources()}
    missing = sorted(
        str(f.relative_to(TESTS.parent)) for f in folders if not (f / "__init__.py").exists()
    )
    assert missing == [], f"folders without __init__.py (they would go on sys.path): {missing}"


def test_no_test_folder_or_module_is_named_like_a_library():
    libraries = {name.lower() for name in _library_names()}
    clashes = {
        name: str(path.relative_to(TESTS.parent))
        for name, path in _our_names().items()
        if name.lower() in libraries
    }
    assert clashes == {}, f"tests/ names that shadow a library's top-level module: {clashes}"


def test_no_test_folder_or_module_is_importable_as_a_top_level_module():
    """What this process imports under a tests/ name is never a file of tests/."""
    shadowing = {}
    for name in _our_names():
        spec = importlib.util.find_spec(name)
        origins = [spec.origin, *(spec.submodule_search_locations or [])] if spec else []
        inside = [o for o in origins if o and Path(o).resolve().is_relative_to(TESTS)]
        if inside:
            shadowing[name] = inside
    assert shadowing == {}, f"tests/ folders or modules importable as top-level: {shadowing}"


def test_tests_import_helpers_not_other_tests_and_leave_sys_path_alone():
    """Shared code lives in tests.helpers (or a conftest fixture): no test module imports
    another, and nothing under tests/ (generated scripts included) edits sys.path."""
    edits = re.compile(r"sys\.path\.(insert|append|extend|remove)\(|sys\.path\s*(\+?=|\[)")
    problems = []
    for path in _sources():
        text = path.read_text()
        where = path.relative_to(TESTS.parent)
        if edits.search(text):
            problems.append(f"{where}: edits sys.path")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            else:
                continue
            for module in modules:
                last = module.rsplit(".", 1)[-1]
                if last.startswith("test_") or last == "conftest":
                    problems.append(f"{where}:{node.lineno}: imports {module}")
    assert problems == [], "\n".join(problems)
