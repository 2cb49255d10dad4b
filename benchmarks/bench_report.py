"""``fastevalcb report`` on a big run: build time and first paint in headless Chromium.

    python benchmarks/bench_report.py [--rows 10000] [--versions 10] [--repeat 3]

Makes a real offline run with DetectionEvalCallback (a near-free model predicting three
boxes per 32x32 image; ``--rows`` validation images, one pred-table version per epoch for
``--versions`` epochs), then times ``build_report`` and opens the page from file:// in the
system Chromium (Playwright, ``executable_path``), fresh browser context each time:

* ``first_render_ms``: navigation start -> the first page of rows with overlays in the DOM
  (the page's own ``performance.now()`` when it has rendered);
* ``first_contentful_paint_ms``: Chromium's paint timing;
* ``switch_version_ms``, ``sort_ms``, ``filter_ms``: one interaction each, action -> render.

Writes benchmarks/results/report.json (``--no-write``: print only).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's fastevalcb
from _machine import cpu_name  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SIZE = 32


def make_run(root: Path, rows: int, versions: int) -> Path:
    """A real offline run: ``rows`` samples x ``versions`` pred-table versions."""
    for var, sub in [
        ("WANDB_DIR", "run"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ]:
        (root / sub).mkdir(parents=True, exist_ok=True)
        os.environ[var] = str(root / sub)
    os.environ.update(WANDB_MODE="offline", WANDB_SILENT="true", WANDB_CONSOLE="off")
    import keras
    import numpy as np
    import wandb

    from fastevalcb import DetectionEvalCallback
    from fastevalcb.offline import OfflineRun
    from fastevalcb.synthetic import CLASS_NAMES, make_shapes

    keras.utils.set_random_seed(0)
    val = make_shapes(rows, SIZE, seed=1)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = {
        "boxes": keras.layers.Reshape((3, 4))(keras.layers.Dense(12, activation="sigmoid")(x)),
        "scores": keras.layers.Dense(3, activation="sigmoid")(x),
        "classes": keras.layers.Dense(3, activation="softmax")(x),
    }
    model = keras.Model(inputs, outputs)
    model.compile("sgd", loss={"scores": "mse"})

    def adapter(out):
        return {
            "boxes": out["boxes"] * SIZE,
            "scores": out["scores"],
            "classes": np.argmax(out["classes"], axis=1)[:, None].repeat(3, axis=1),
        }

    run = wandb.init(project="fastevalcb-bench-report", dir=str(root / "run"))
    targets = {"boxes": val.boxes[:, None, :], "classes": val.labels[:, None]}
    cb = DetectionEvalCallback(
        (val.images, targets),
        CLASS_NAMES,
        adapter=adapter,
        score_threshold=0.0,
        batch_size=1000,
        verbose=0,
    )
    train = min(64, rows)
    model.fit(
        val.images[:train],
        {"scores": np.zeros((train, 3))},
        epochs=versions,
        verbose=0,
        callbacks=[cb],
    )
    run.finish()
    return OfflineRun.latest(root / "run").wait_complete().run_dir


def measure_page(html: Path, repeat: int) -> dict:
    from playwright.sync_api import sync_playwright

    from tests.helpers.report import find_chromium  # the checkout's root is on sys.path

    out: dict[str, list[float]] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=find_chromium(), args=["--no-sandbox"])
        version = browser.version
        for _ in range(repeat):
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            page.goto(html.as_uri())
            page.wait_for_function("document.body.dataset.ready", timeout=60_000)
            out.setdefault("first_render_ms", []).append(
                float(page.evaluate("document.body.dataset.firstRenderMs"))
            )
            fcp = page.evaluate(
                "performance.getEntriesByName('first-contentful-paint')"
                ".map(e => e.startTime)[0] || null"
            )
            out.setdefault("first_contentful_paint_ms", []).append(fcp)
            rows = int(page.get_attribute("#count", "data-rows"))
            for name, action in [
                ("switch_version_ms", lambda: page.select_option("#version", "0")),
                ("sort_ms", lambda: page.click('th[data-key="a:ap50"]')),
                ("filter_ms", lambda: page.select_option('select[data-filter="a:image"]', "1")),
            ]:
                before = page.evaluate("document.body.dataset.ready")
                t0 = page.evaluate("performance.now()")
                action()
                page.wait_for_function(f"document.body.dataset.ready !== {before!r}")
                out.setdefault(name, []).append(page.evaluate("performance.now()") - t0)
            context.close()
        browser.close()
    summary = {k: round(statistics.median(v), 1) for k, v in out.items() if None not in v}
    summary["runs"] = {k: [round(x, 1) for x in v if x is not None] for k, v in out.items()}
    summary["rows_shown_of"] = rows
    summary["chromium"] = version
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="keep the run here (default: a temp dir)")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="fastevalcb-bench-report-"))

    t0 = time.perf_counter()
    run_dir = make_run(root, args.rows, args.versions)
    run_s = time.perf_counter() - t0
    from fastevalcb.report import build_report

    t0 = time.perf_counter()
    html = build_report(run_dir, root / "report.html")
    build_s = time.perf_counter() - t0
    files = html.parent / f"{html.stem}_files"
    sizes = {p.name: p.stat().st_size for p in files.iterdir()}
    first_load = ["app.js", "app.css", "meta.js", "images.js", f"t0v{args.versions - 1}.js"]
    page = measure_page(html, args.repeat)
    result = {
        "rows": args.rows,
        "versions": args.versions,
        "machine": {
            "cpu": cpu_name(),
            "cores": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg": os.getloadavg(),
        },
        "make_run_s": round(run_s, 2),
        "build_s": round(build_s, 2),
        "report_files": len(sizes),
        "report_bytes": sum(sizes.values()),
        "first_load_bytes": sum(sizes[n] for n in first_load),
        "version_shard_bytes": sizes[f"t0v{args.versions - 1}.js"],
        "page": page,
    }
    print(json.dumps(result, indent=2))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "report.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
