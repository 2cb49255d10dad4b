"""Real offline runs of the three task callbacks (tiny models, 2 epochs), and a browser.

Runs are built once per session under a temp dir with wandb offline; the browser is the
system Chromium driven by Playwright (its own browser download is not used). Without a
Chromium the browser tests are skipped, except under CI=true where they fail.
"""

from __future__ import annotations

import os

import pytest

from tests.helpers.report import find_chromium, make_run


@pytest.fixture(scope="session")
def task_runs(tmp_path_factory):
    """``{task: OfflineRun}`` for classification, detection and segmentation."""
    root = tmp_path_factory.mktemp("report_runs")
    return {
        task: make_run(task, root / task)
        for task in ("classification", "detection", "segmentation")
    }


@pytest.fixture(scope="session")
def browser():
    """A headless system Chromium under Playwright; skip (fail under CI) without one."""
    in_ci = os.environ.get("CI", "").lower() in ("1", "true", "yes")
    executable = find_chromium()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        sync_playwright = None
    if executable is None or sync_playwright is None:
        missing = (
            "playwright (pip install playwright)"
            if sync_playwright is None
            else "a Chromium (apt-get install chromium)"
        )
        if in_ci:
            pytest.fail(f"the report's browser tests need {missing}; .ci/run installs it")
        pytest.skip(f"no browser: install {missing}")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A fresh page that records script errors (asserted empty by open_report)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()
