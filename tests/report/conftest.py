"""Real offline runs of the three task callbacks (tiny models, 2 epochs), and a page of
the session's browser (``browser`` in tests/conftest.py).

Runs are built once per session under a temp dir with wandb offline; the browser is the
system Chromium driven by Playwright (its own browser download is not used). Without a
Chromium the browser tests are skipped, except under CI=true where they fail.
"""

from __future__ import annotations

import pytest

from tests.helpers.report import make_run


@pytest.fixture(scope="session")
def task_runs(tmp_path_factory):
    """``{task: OfflineRun}`` for classification, detection and segmentation."""
    root = tmp_path_factory.mktemp("report_runs")
    return {
        task: make_run(task, root / task)
        for task in ("classification", "detection", "segmentation")
    }


@pytest.fixture
def page(browser):
    """A fresh page that records script errors (asserted empty by open_report)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    context.close()
