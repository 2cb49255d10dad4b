"""The metric groups a task callback can log with each version, and their W&B charts.

Every group is computed on the logging worker from arrays the version's batches already
produced (no second forward pass) and logged in the same ``run.log`` call as the version's
summary metrics (``<prefix>/<key>``). Charts are ``wandb.plot_table`` with wandb's own
presets (``wandb/confusion_matrix/v1`` is what ``wandb.plot.confusion_matrix`` logs,
``wandb/lineseries/v0`` what ``wandb.plot.line_series`` logs), built from counts:
``wandb.plot.confusion_matrix`` wants one list entry per sample (per pixel, for
segmentation). Their tables are ScalarTables (:class:`~fastevalcb.tables.ScalarTable`), plain
``wandb.Table`` objects written to their artifacts a column at a time.

Tables state their column types (``dtype=``, ``optional=False``) where no cell is empty,
and skip the type inference elsewhere (``allow_mixed_types=True``): wandb's per-cell
inference would cost more than all of a version's metrics. Their rows are set as the
table's ``data`` (:func:`_filled_table`), not added one by one: with the types fixed up
front, ``add_data``'s per-row type merge (a PR chart has ~1,200 rows) could only return
the same types.
Sizes are bounded whatever the number of classes: a per-class table has one row a class;
a confusion chart shows at most ``max_classes`` classes (the rest summed into
``"(other)"``); PR curves show the ``top_k`` classes by support and their mean, each at
101 recall points.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: Groups per task; ``metrics=None`` turns every group of the task on.
GROUPS = {
    "detection": ("coco", "per_class", "confusion_matrix", "pr_curve"),
    "classification": ("per_class", "confusion_matrix", "pr_curve", "calibration"),
    "segmentation": ("per_class", "confusion_matrix"),
}
OTHER = "(other)"
BACKGROUND = "background"


def check_metrics(metrics: Iterable[str] | None, task: str) -> frozenset[str]:
    """The groups asked for (all of the task's when None); unknown names raise."""
    known = GROUPS[task]
    if metrics is None:
        return frozenset(known)
    if isinstance(metrics, str):
        raise TypeError(f"metrics must be a list of group names, e.g. [{metrics!r}], not a str")
    asked = list(metrics)
    unknown = [m for m in asked if m not in known]
    if unknown:
        raise ValueError(
            f"unknown metrics groups {unknown} for {task}; expected some of {list(known)}"
        )
    return frozenset(asked)


def _cell(value: Any) -> Any:
    """A JSON-safe table cell: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def per_class_table(columns: Mapping[str, Iterable[Any]]) -> Any:
    """A ``wandb.Table`` with one row per class (NaN cells left empty)."""
    names: list[str | int] = list(columns)
    rows = [[_cell(v) for v in row] for row in zip(*columns.values())]
    return _filled_table(names, rows, allow_mixed_types=True)


def _typed_table(columns: list[str | int], rows: list[list[Any]], dtypes: list[type]) -> Any:
    """A ``wandb.Table`` whose cells are all of ``dtypes`` (none empty)."""
    return _filled_table(columns, rows, dtype=dtypes, optional=False)


def _filled_table(columns: list[str | int], rows: list[list[Any]], **types: Any) -> Any:
    """``wandb.Table(columns=columns, data=rows, **types)`` for ``types`` that fix every
    column's type (a ``dtype`` per column, not optional, or ``allow_mixed_types``): the
    same table, its rows set as its documented ``data`` attribute instead of added one by
    one. The callers build every cell of its column's type (``_cell``, ``float``, ``str``),
    so ``add_data``'s per-row type check could not fail. A
    :class:`~fastevalcb.tables.ScalarTable`: written to its artifact a column at a time."""
    from fastevalcb.tables import ScalarTable

    table = ScalarTable(columns=columns, **types)
    table.data = rows
    return table


def fold_classes(
    matrix: np.ndarray, names: Sequence[str], max_classes: int, keep_last: bool = False
) -> tuple[np.ndarray, list[str]]:
    """At most ``max_classes`` rows/columns: the classes with the most true samples (rows
    summed, ties by id), the rest summed into ``"(other)"``. ``keep_last`` always keeps
    the last class (detection's background)."""
    n = matrix.shape[0]
    if n <= max_classes:
        return matrix, list(names)
    candidates = np.arange(n - 1) if keep_last else np.arange(n)
    support = matrix.sum(axis=1)[candidates]
    budget = max_classes - 1 - int(keep_last)
    top = np.sort(candidates[np.argsort(-support, kind="stable")[:budget]])
    keep = np.concatenate([top, [n - 1]]) if keep_last else top
    group = np.full(n, len(keep), np.int64)  # everything else -> (other)
    group[keep] = np.arange(len(keep))
    folded = np.zeros((len(keep) + 1, len(keep) + 1), np.int64)
    np.add.at(folded, (group[:, None], group[None, :]), matrix)
    labels = [names[i] for i in keep] + [OTHER]
    if keep_last:  # (other) before the background
        order = list(range(len(top))) + [len(keep), len(keep) - 1]
        folded = folded[np.ix_(order, order)]
        labels = [labels[i] for i in order]
    return folded, labels


def confusion_chart(
    matrix: np.ndarray,
    names: Sequence[str],
    title: str,
    max_classes: int = 30,
    keep_last: bool = False,
) -> Any:
    """``wandb.plot.confusion_matrix``'s chart (``Actual, Predicted, nPredictions``) from a
    ``[true, predicted]`` count matrix."""
    import wandb

    folded, labels = fold_classes(np.asarray(matrix, np.int64), names, max_classes, keep_last)
    data = [
        [labels[i], labels[j], int(folded[i, j])]
        for i in range(len(labels))
        for j in range(len(labels))
    ]
    table = _typed_table(["Actual", "Predicted", "nPredictions"], data, [str, str, int])
    return wandb.plot_table(
        "wandb/confusion_matrix/v1",
        table,
        {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
        {"title": title},
    )


def top_k_by_support(support: np.ndarray, top_k: int) -> np.ndarray:
    """Ids of the ``top_k`` classes with the most support (> 0), ties by id."""
    order = np.argsort(-np.asarray(support), kind="stable")[:top_k]
    return order[np.asarray(support)[order] > 0]


def pr_chart(recall: np.ndarray, precision: np.ndarray, keys: Sequence[str], title: str) -> Any:
    """``wandb.plot.pr_curve``'s chart (``class, precision, recall``; its
    ``wandb/area-under-curve/v0`` preset): one curve per row of ``precision`` ``(K, P)``
    at ``recall`` ``(P,)`` (shared) or ``(K, P)``; NaN points are left out."""
    import wandb

    recall = np.broadcast_to(np.asarray(recall, np.float64), np.shape(precision))
    data = [
        [key, float(p), float(r)]
        for key, prow, rrow in zip(keys, precision, recall)
        for r, p in zip(rrow, prow)
        if math.isfinite(float(p)) and math.isfinite(float(r))
    ]
    table = _typed_table(["class", "precision", "recall"], data, [str, float, float])
    return wandb.plot_table(
        "wandb/area-under-curve/v0",
        table,
        {"x": "recall", "y": "precision", "class": "class"},
        {"title": title, "x-axis-title": "Recall", "y-axis-title": "Precision"},
    )


def line_chart(xs: np.ndarray, ys: np.ndarray, keys: Sequence[str], title: str, xname: str) -> Any:
    """``wandb.plot.line_series``' chart: one line per row of ``ys`` ``(K, P)`` over ``xs``
    ``(P,)``; NaN points are left out."""
    import wandb

    data = [
        [float(x), key, float(y)]
        for key, row in zip(keys, ys)
        for x, y in zip(xs, row)
        if math.isfinite(float(y))
    ]
    table = _typed_table(["step", "lineKey", "lineVal"], data, [float, str, float])
    return wandb.plot_table(
        "wandb/lineseries/v0",
        table,
        {"step": "step", "lineKey": "lineKey", "lineVal": "lineVal"},
        {"title": title, "xname": xname},
    )


def nan_if_negative(value: float) -> float:
    """COCO's -1 ("no ground truth in this range") as NaN, which W&B charts leave out."""
    return float("nan") if value < 0 else float(value)


def macro(values: np.ndarray, over: np.ndarray) -> float:
    """scikit-learn's macro average: the mean over the classes ``over`` of ``values``,
    an undefined (NaN) value counting as 0 (``zero_division=0``); NaN over no class."""
    picked = np.asarray(values, np.float64)[np.asarray(over, bool)]
    return float(np.nan_to_num(picked).mean()) if picked.size else float("nan")
