"""Reading the metric tables and charts a task logged with its summary metrics."""

from __future__ import annotations

import json

import numpy as np


def metric_rows(log, key: str) -> list[dict]:
    """History rows (``run.log`` calls) that logged ``key`` (a table's keys are
    ``<key>/path``, ``<key>/_type``, ...)."""
    return [row for row in log.history() if key in row or f"{key}/_type" in row]


def has_table(row: dict, key: str) -> bool:
    return f"{key}/_type" in row


def logged_table(log, row: dict, key: str) -> dict[str, list]:
    """The ``wandb.Table`` logged under ``key`` in a history row: ``{column: values}``,
    read from the run's files (``media/table/...table.json``)."""
    assert row[f"{key}/_type"] == "table-file", row
    data = json.loads((log.run_dir / "files" / row[f"{key}/path"]).read_text())
    return {name: [r[i] for r in data["data"]] for i, name in enumerate(data["columns"])}


def chart_panels(log) -> dict[str, str]:
    """``{chart key: vega preset}`` of the custom charts the run's config records hold."""
    out = {}
    for record in log.records:
        if record.HasField("config"):
            for item in record.config.update:
                if item.key == "_wandb" or (item.nested_key and item.nested_key[0] == "_wandb"):
                    value = json.loads(item.value_json)
                    if (
                        item.nested_key
                        and len(item.nested_key) >= 3
                        and item.nested_key[1] == "visualize"
                    ):
                        out[item.nested_key[2]] = value["panel_config"]["panelDefId"]
                    elif isinstance(value, dict):
                        for name, chart in value.get("visualize", {}).items():
                            out[name] = chart["panel_config"]["panelDefId"]
    return out


def confusion_from_chart(table: dict[str, list], labels: list[str]) -> np.ndarray:
    """The ``[actual, predicted]`` count matrix a confusion chart's table holds."""
    index = {name: i for i, name in enumerate(labels)}
    out = np.zeros((len(labels), len(labels)), np.int64)
    for a, p, n in zip(table["Actual"], table["Predicted"], table["nPredictions"]):
        out[index[a], index[p]] += int(n)
    return out


def nan_to_none(values):
    return [None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in values]
