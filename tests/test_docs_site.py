"""The docs site: built with ``mkdocs build --strict``, then opened in headless Chromium.

Needs the ``docs`` extra (mkdocs, mkdocs-material, mkdocstrings-python), which only CI's main
leg installs (it also runs ``mkdocs build --strict`` itself): without it the tests skip. With
it, a missing Chromium or Playwright skips them too, except under CI=true, where it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# page -> text its main heading must hold
PAGES = {
    "index.html": "fastevalcb",
    "getting-started.html": "Getting started",
    "tasks/detection.html": "DetectionEvalCallback",
    "performance.html": "Performance",
    "api/tasks.html": "Task callbacks",
    "changelog.html": "Changelog",
}


# At import, not in the ``site`` fixture: pytest sets session fixtures up first, so the
# session ``browser`` would fail (under CI) before a module fixture could skip.
pytest.importorskip("mkdocs", reason='no mkdocs: pip install -e ".[docs]"')
pytest.importorskip("mkdocstrings", reason='no mkdocstrings: pip install -e ".[docs]"')


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, NO_MKDOCS_2_WARNING="1"),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.mark.slow
def test_site_has_every_page(site: Path):
    for page in PAGES:
        assert (site / page).is_file(), page
    # The API reference is rendered from the docstrings, not left as ::: directives.
    api = (site / "api" / "tasks.html").read_text()
    assert 'id="fastevalcb.tasks.ClassificationEvalCallback"' in api
    assert "top_k" in api and ":::" not in api


@pytest.mark.slow
@pytest.mark.parametrize("page", list(PAGES))
def test_page_renders_in_chromium(site: Path, browser, page: str):
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto((site / page).as_uri())
    tab.wait_for_load_state("load")
    heading = tab.inner_text("article h1")
    assert PAGES[page] in heading
    # Every picture on the page loaded (broken images have naturalWidth 0).
    widths = tab.eval_on_selector_all("article img", "els => els.map(e => e.naturalWidth)")
    assert all(w > 0 for w in widths), (page, widths)
    if page in ("performance.html", "tasks/detection.html"):
        assert widths, f"{page} shows its pictures"
        assert tab.locator("article table").count() > 0, f"{page} shows its tables"
    context.close()
    assert errors == []
