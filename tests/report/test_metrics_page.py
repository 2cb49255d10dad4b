"""The report's per-class section in a real browser: the per-class table (sortable), the
confusion heatmap and the curves, against the metric tables the run recorded."""

from __future__ import annotations

import json

import pytest

from fastevalcb.report import build_report
from tests.helpers.report import open_report

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")


def _latest_tables(run) -> dict[str, dict]:
    """``{key: {"columns", "data"}}``: the last metric table of each key in the history."""
    out = {}
    for row in run.history():
        for key, value in row.items():
            if key.endswith("/_type") and value == "table-file":
                name = key[: -len("/_type")]
                out[name] = json.loads((run.run_dir / "files" / row[f"{name}/path"]).read_text())
    return out


def _texts(page, selector: str) -> list[str]:
    return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")


@pytest.mark.parametrize("task", ["classification", "detection"])
def test_per_class_table_heatmap_and_curves_show_what_was_logged(task_runs, page, tmp_path, task):
    run = task_runs[task]
    logged = _latest_tables(run)
    assert {"eval/per_class", "eval/confusion_matrix_table", "eval/pr_curve_table"} <= set(logged)
    open_report(page, build_report(run.run_dir, tmp_path / "report.html"))

    per_class = logged["eval/per_class"]
    table = 'table.per-class[data-name="eval/per_class"]'
    assert _texts(page, f"{table} th") == per_class["columns"]
    classes = [r[0] for r in per_class["data"]]
    assert _texts(page, f'{table} td[data-col="class"]') == classes

    # Sort by a numeric column: ascending (empty cells last), then descending.
    col = per_class["columns"].index("recall")
    value = {r[0]: r[col] for r in per_class["data"]}
    page.click(f'{table} th[data-col="recall"]')
    shown = _texts(page, f'{table} td[data-col="class"]')
    assert shown == sorted(
        classes, key=lambda c: (value[c] is None, value[c] or 0, classes.index(c))
    )
    page.click(f'{table} th[data-col="recall"]')
    shown = _texts(page, f'{table} td[data-col="class"]')
    known = [value[c] for c in shown if value[c] is not None]
    assert known == sorted(known, reverse=True)
    assert page.get_attribute(f'{table} th[data-col="recall"]', "class") == "sorted-desc"

    # The heatmap: one cell per (actual, predicted) pair, with the logged count.
    cm = logged["eval/confusion_matrix_table"]
    cells = page.eval_on_selector_all(
        'svg.heatmap[data-name="eval/confusion_matrix_table"] rect.cell',
        "els => els.map(e => [e.dataset.actual, e.dataset.predicted, +e.dataset.count])",
    )
    assert sorted(map(tuple, cells)) == sorted(map(tuple, cm["data"]))

    # The PR chart: one line per class the table holds (top classes and the mean).
    pr = logged["eval/pr_curve_table"]
    keys = page.eval_on_selector_all(
        'svg.curves[data-name="eval/pr_curve_table"] polyline', "els => els.map(e => e.dataset.key)"
    )
    assert sorted(keys) == sorted({r[0] for r in pr["data"]})
    assert "mean" in keys
    assert page.errors == []


def test_metric_tables_are_in_meta_and_not_listed_as_sample_tables(task_runs, tmp_path):
    run = task_runs["segmentation"]
    build_report(run.run_dir, tmp_path / "report.html")
    text = (tmp_path / "report_files" / "meta.js").read_text()
    meta = json.loads(text[text.index("(") + 1 : text.rindex(")")].split(",", 1)[1])
    assert set(meta["metric_tables"]) == {"eval/per_class", "eval/confusion_matrix_table"}
    assert all(t["type"] != "run_table" for t in meta["tables"])
    logged = _latest_tables(run)["eval/per_class"]
    assert meta["metric_tables"]["eval/per_class"]["data"] == logged["data"]
