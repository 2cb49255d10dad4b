"""The README and the docs: every Python block runs, the generated parts are current.

Every ```python block in README.md, CHANGELOG.md and docs/**/*.md runs here in a fresh
subprocess (real TensorFlow, real wandb offline in a temp dir, small generated data), unless
the line right before it says why it cannot:

    <!-- docs-test: skip: <reason> -->

A block that calls ``wandb.init`` must leave an offline run whose log holds at least one
pred-table version: the run is read back from disk and checked. The README's links must
point at files that exist, and the performance page and the README's headline table must be
what ``docs/gen_performance.py`` makes of ``benchmarks/results``.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").rglob("*.md")])
FENCE = re.compile(r"^```(\S*)[^\n]*\n(.*?)^```", re.M | re.S)
SKIP = re.compile(r"<!--\s*docs-test:\s*skip:\s*(\S.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int
    code: str
    skip: str | None  # the reason, for a block marked not runnable

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def python_blocks(page: Path) -> list[Block]:
    text = page.read_text()
    blocks = []
    for match in FENCE.finditer(text):
        if match.group(1).lower() not in ("python", "py", "python3"):
            continue
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = SKIP.search(before)
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(page, line, match.group(2), marker.group(1) if marker else None))
    return blocks


BLOCKS = [b for page in PAGES for b in python_blocks(page)]
RUNNABLE = [b for b in BLOCKS if b.skip is None]


def test_blocks_are_found():
    # The parser must see the README's quickstarts, or the tests below check nothing.
    readme = [b for b in BLOCKS if b.page.name == "README.md"]
    assert len(readme) >= 2 and all(b.skip is None for b in readme)
    assert len(RUNNABLE) >= 10


def test_skipped_blocks_say_why():
    for block in BLOCKS:
        if block.skip is not None:
            assert len(block.skip) >= 10, f"{block.id}: give the reason it cannot run"


def _env(tmp: Path) -> dict[str, str]:
    env = dict(
        os.environ,
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_CONSOLE="off",
        TF_CPP_MIN_LOG_LEVEL="3",
        WANDB_DIR=str(tmp),
        PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    )
    for var, sub in [
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ]:
        (tmp / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(tmp / sub)
    env.pop("TF_USE_LEGACY_KERAS", None)  # a block that wants Keras 2 sets it itself
    return env


@pytest.mark.slow
@pytest.mark.parametrize("block", [pytest.param(b, id=b.id) for b in RUNNABLE])
def test_block_runs(block: Block, tmp_path: Path):
    if "TF_USE_LEGACY_KERAS" in block.code:
        pytest.importorskip("tf_keras")
    script = tmp_path / "block.py"
    script.write_text(block.code)
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, f"{block.id} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    if "wandb.init(" in block.code:
        from fastevalcb.offline import OfflineRun

        run = OfflineRun.latest(tmp_path / "wandb").wait_complete()
        versions = run.artifacts(type="evaluation")
        assert versions, f"{block.id}: the run logged no pred-table version"
        table = run.load_table(versions[-1], "eval_data")
        assert table.rows and "image" in table.columns


def test_readme_links_resolve():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert local, "the README links into docs/"
    missing = [link for link in local if not (ROOT / link).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_readme_is_short():
    assert (ROOT / "README.md").stat().st_size <= 12 * 1024


def test_performance_docs_are_generated():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_performance.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
