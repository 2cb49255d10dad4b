"""fastevalcb.tasks._metrics: group names, folding a big confusion matrix, chart tables."""

from __future__ import annotations

import numpy as np
import pytest
import wandb

from fastevalcb.tasks import _metrics


def test_groups_default_to_all_and_unknown_names_fail():
    assert _metrics.check_metrics(None, "segmentation") == {"per_class", "confusion_matrix"}
    assert _metrics.check_metrics([], "detection") == frozenset()
    with pytest.raises(ValueError, match=r"unknown metrics groups \['ece'\] for segmentation"):
        _metrics.check_metrics(["ece"], "segmentation")
    with pytest.raises(TypeError, match="a list of group names"):
        _metrics.check_metrics("coco", "detection")


def test_folding_keeps_the_most_frequent_classes_and_sums_the_rest():
    rng = np.random.default_rng(0)
    m = rng.integers(0, 9, (12, 12))
    m[:, -1] = 0  # the last row/column: detection's background, always kept
    folded, labels = _metrics.fold_classes(m, [f"c{i}" for i in range(12)], 6, keep_last=True)
    assert folded.shape == (6, 6) and folded.sum() == m.sum()
    top = sorted(np.argsort(-m[:-1].sum(axis=1), kind="stable")[:4])
    assert labels == [f"c{i}" for i in top] + [_metrics.OTHER, "c11"]
    np.testing.assert_array_equal(folded[:4, :4], m[np.ix_(top, top)])
    same, names = _metrics.fold_classes(m, list("abcdefghijkl"), 12)
    assert same is m and names == list("abcdefghijkl")


def test_chart_tables_leave_out_undefined_points_and_cells():
    chart = _metrics.pr_chart(np.array([0.0, 0.5, 1.0]), np.array([[1.0, np.nan, 0.5]]), ["a"], "t")
    assert chart.table.data == [["a", 1.0, 0.0], ["a", 0.5, 1.0]]
    table = _metrics.per_class_table(
        {"class": ["a", "b"], "ap": np.array([np.nan, 0.25]), "n": np.array([0, 3])}
    )
    assert table.data == [["a", None, 0], ["b", 0.25, 3]]
    cm = _metrics.confusion_chart(np.array([[2, 1], [0, 3]]), ["x", "y"], "t")
    assert cm.table.data == [["x", "x", 2], ["x", "y", 1], ["y", "x", 0], ["y", "y", 3]]
    assert cm.spec.spec_name == "wandb/confusion_matrix/v1"


def test_macro_counts_undefined_as_zero_over_the_classes_asked():
    assert _metrics.macro(np.array([1.0, np.nan, 0.5]), np.array([True, True, False])) == 0.5
    assert np.isnan(_metrics.macro(np.array([1.0]), np.array([False])))


def test_chart_tables_are_the_tables_wandb_builds_row_by_row(wandb_env):
    """The oracle: ``wandb.Table(data=rows, ...)``, whose ``add_data`` types every row; ours
    set the rows at once, so the JSON wandb writes (column types included) must match."""
    rng = np.random.default_rng(1)
    precision = rng.random((3, 101))
    precision[1, 7] = np.nan
    charts = [
        _metrics.pr_chart(np.linspace(0, 1, 101), precision, ["a", "b", "mean"], "t"),
        _metrics.confusion_chart(rng.integers(0, 50, (4, 4)), list("wxyz"), "t"),
        _metrics.line_chart(np.arange(5.0), rng.random((2, 5)), ["p", "q"], "t", "step"),
    ]
    dtypes = {
        "wandb/area-under-curve/v0": [str, float, float],
        "wandb/confusion_matrix/v1": [str, str, int],
        "wandb/lineseries/v0": [float, str, float],
    }
    per_class = _metrics.per_class_table(
        {"class": ["a", "b"], "ap": np.array([np.nan, 0.25]), "n": np.array([0, 3])}
    )
    pairs = [
        (
            chart.table,
            wandb.Table(
                columns=chart.table.columns,
                data=chart.table.data,
                dtype=dtypes[chart.spec.spec_name],
                optional=False,
            ),
        )
        for chart in charts
    ]
    pairs.append(
        (per_class, wandb.Table(per_class.columns, data=per_class.data, allow_mixed_types=True))
    )
    for ours, stock in pairs:
        assert len(ours.data) > 0
        artifact = wandb.Artifact("charts", "run_table")
        assert ours.to_json(artifact) == stock.to_json(artifact)
        assert ours._column_types == stock._column_types  # what a later add_data merges into
    for chart, _ in pairs[:3]:  # the typed tables still refuse a wrong cell, as stock does
        with pytest.raises(TypeError, match="incompatible types"):
            chart.add_data(*([None] * len(chart.columns)))


@pytest.mark.fast_path
def test_a_scalar_table_writes_wandb_s_json_a_column_at_a_time(wandb_env):
    """Every kind of plain cell (NaN as null, inf kept), typed and mixed: the JSON
    ``wandb.Table.to_json`` writes for the same rows; a numpy cell, a row longer than the
    columns and rows given as an array fall back to it."""
    from fastevalcb.tables import ScalarTable

    rows = [
        ["a", 1, 0.5, True, None],
        ["b", 2, float("nan"), False, "x"],
        ["c", 3, float("inf"), True, 2.5],
    ]
    columns = ["s", "i", "f", "b", "mixed"]
    artifact = wandb.Artifact("charts", "run_table")
    ours = ScalarTable(columns=columns, data=rows, allow_mixed_types=True)
    stock = wandb.Table(columns=columns, data=rows, allow_mixed_types=True)
    assert ours.to_json(artifact) == stock.to_json(artifact)
    typed = [row[:4] for row in rows]
    ours = ScalarTable(columns=columns[:4], data=typed, dtype=[str, int, float, bool])
    stock = wandb.Table(columns=columns[:4], data=typed, dtype=[str, int, float, bool])
    assert ours.to_json(artifact) == stock.to_json(artifact)
    numpy_cell = [["a", np.float32(0.5)]]
    ours = ScalarTable(columns=["s", "f"], data=numpy_cell)
    assert ours.to_json(artifact) == wandb.Table(["s", "f"], data=numpy_cell).to_json(artifact)
    for data in ([["a", 0.5, "extra"], ["b", 1.5]], np.array([[1.0, 2.0], [3.0, 4.0]])):
        ours, stock = ScalarTable(columns=["s", "f"]), wandb.Table(columns=["s", "f"])
        ours.data = stock.data = data
        assert ours.to_json(artifact) == stock.to_json(artifact)


@pytest.mark.fast_path
def test_a_logged_chart_records_the_table_stock_records_written_by_columns(
    offline_run, monkeypatch
):
    """The run records the same chart table for a ScalarTable as for a stock ``wandb.Table``
    of the same rows, and ours was written by the column writer (counted, not replaced)."""
    from fastevalcb.tables import columnar

    calls = []
    column_to_json = columnar._column_to_json

    def counted(column, artifact, *args, **kwargs):
        calls.append(len(column))
        return column_to_json(column, artifact, *args, **kwargs)

    monkeypatch.setattr(columnar, "_column_to_json", counted)
    run, read = offline_run
    precision = np.random.default_rng(2).random((2, 101))
    precision[0, 3] = np.nan
    chart = _metrics.pr_chart(np.linspace(0, 1, 101), precision, ["a", "b"], "t")
    stock = wandb.Table(
        columns=chart.table.columns,
        data=chart.table.data,
        dtype=[str, float, float],
        optional=False,
    )
    run.log({"ours": chart, "stock": wandb.plot_table(chart.spec.spec_name, stock, {})})
    log = read()
    recorded = {}
    for art in log.artifacts(type="run_table"):
        [path] = [p for p in art.entries if p.endswith(".table.json")]
        recorded[path.split("_table")[0]] = log.read_json(art, path)
    assert set(recorded) == {"ours", "stock"}
    assert recorded["ours"] == recorded["stock"] and recorded["ours"]["nrows"] == 201
    assert calls.count(201) == 3  # one call a column (the rest: the one-time check)
