"""Take the docs' screenshots of ``fastevalcb report``, one per task, in headless Chromium.

    python docs/screenshots.py [--tasks classification detection segmentation] [--keep DIR]

For each task it runs ``examples/<task>.py`` on a little generated data (offline W&B, in a
temp dir), builds ``fastevalcb report`` of that run, opens it from ``file://`` in the system
Chromium under Playwright (no browser download; ``apt-get install chromium``) and saves the
first screen to ``docs/img/report-<task>.png`` (palette PNG, to keep the repo small).
Rerun it when the report's page or the examples change, and commit the PNGs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMG = ROOT / "docs" / "img"
TASKS = ("classification", "detection", "segmentation")
# Small runs: enough samples for a page of rows, enough epochs for non-trivial predictions.
SIZES = {
    "classification": ["--samples", "1024", "--val-samples", "48", "--epochs", "5"],
    "detection": ["--samples", "1024", "--val-samples", "48", "--epochs", "5"],
    "segmentation": ["--samples", "512", "--val-samples", "32", "--epochs", "6"],
}
VIEWPORT = {"width": 1280, "height": 860}


def run_example(task: str, work: Path) -> Path:
    """Run examples/<task>.py into ``work``; return its offline run directory."""
    from fastevalcb.offline import find_runs

    env = dict(
        os.environ,
        WANDB_MODE="offline",
        WANDB_SILENT="true",
        WANDB_CONSOLE="off",
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    for var, sub in [
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ]:
        (work / sub).mkdir(parents=True, exist_ok=True)
        env[var] = str(work / sub)
    subprocess.run(
        [sys.executable, str(ROOT / "examples" / f"{task}.py"), "--dir", str(work), *SIZES[task]],
        check=True,
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
    )
    return find_runs(work / "wandb")[-1]


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("no Chromium found: apt-get install chromium")


def screenshot(html: Path, png: Path) -> None:
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport=VIEWPORT)
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.resolve().as_uri())
        page.wait_for_function("document.body.dataset.ready", timeout=30_000)
        page.wait_for_function("[...document.images].every(i => i.complete)", timeout=30_000)
        if errors:
            sys.exit(f"{html}: script errors: {errors}")
        raw = png.with_suffix(".raw.png")
        page.screenshot(path=str(raw))
        browser.close()
    Image.open(raw).convert("RGB").quantize(colors=128).save(png, optimize=True)
    raw.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--keep", default=None, help="keep the runs and reports in this dir")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from fastevalcb.report import build_report

    work_root = Path(args.keep or tempfile.mkdtemp(prefix="fastevalcb-screens-"))
    IMG.mkdir(parents=True, exist_ok=True)
    for task in args.tasks:
        work = work_root / task
        work.mkdir(parents=True, exist_ok=True)
        run_dir = run_example(task, work)
        html = Path(build_report(run_dir, work / "report.html"))
        png = IMG / f"report-{task}.png"
        screenshot(html, png)
        print(f"wrote {png.relative_to(ROOT)} ({png.stat().st_size:,} bytes) from {run_dir}")
    if not args.keep:
        shutil.rmtree(work_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
