"""ColumnarTable vs wandb.Table, and canaries for the wandb internals tables.py relies on.

If a wandb release changes one of these, these tests fail first and say which.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import wandb
from wandb.sdk.artifacts.storage_handlers.wb_local_artifact_handler import WBLocalArtifactHandler

from fastevalcb.tables import CLIENT_REF_SCHEME, ColumnarTable, TableSchemaError


def _table_json(artifact, table, name="t"):
    entry = artifact.add(table, name)
    return json.loads(open(entry.local_path).read())


def test_columnar_table_serializes_like_wandb_table(wandb_env):
    rows = [[i, float(i) / 3, f"s{i}", bool(i % 2), None if i == 2 else i * 2] for i in range(5)]
    columns = ["i", "f", "s", "b", "maybe"]
    stock = _table_json(wandb.Artifact("a", "x"), wandb.Table(columns=columns, data=rows))
    ours_rows = ColumnarTable(columns)
    for row in rows:
        ours_rows.add_data(*row)
    ours = _table_json(wandb.Artifact("b", "x"), ours_rows)
    cols = ColumnarTable(columns)
    cols.add_columns({c: [r[k] for r in rows] for k, c in enumerate(columns)})
    by_columns = _table_json(wandb.Artifact("c", "x"), cols)
    for key in ("_type", "columns", "data", "ncols", "nrows", "column_types", "log_mode"):
        assert ours[key] == stock[key], key
        assert by_columns[key] == stock[key], key


def test_numpy_columns_become_plain_json(wandb_env):
    table = ColumnarTable(["id", "score", "label"])
    table.add_columns(
        {
            "id": np.arange(3, dtype=np.int64),
            "score": np.array([0.5, 0.25, 1.0], dtype=np.float32),
            "label": np.array(["a", "b", "c"]),
        }
    )
    data = _table_json(wandb.Artifact("a", "x"), table)["data"]
    assert data == [[0, 0.5, "a"], [1, 0.25, "b"], [2, 1.0, "c"]]


def test_mixed_incompatible_column_is_a_clear_error(wandb_env):
    table = ColumnarTable(["x"])
    table.add_data(1)
    table.add_data("one")
    with pytest.raises(TypeError, match=r"column 'x' mixes incompatible types"):
        _table_json(wandb.Artifact("a", "x"), table)
    mixed = ColumnarTable(["x"], allow_mixed_types=True)
    mixed.add_data(1)
    mixed.add_data("one")
    assert _table_json(wandb.Artifact("b", "x"), mixed)["data"] == [[1], ["one"]]


def test_add_column_matches_rows(wandb_env):
    table = ColumnarTable(["a"])
    table.add_columns({"a": [1, 2]})
    table.add_column("b", np.array([3, 4]))
    assert table.columns == ["a", "b"] and table.data == [[1, 3], [2, 4]]
    with pytest.raises(TableSchemaError, match="has 1 values, the table has 2 rows"):
        table.add_column("c", [1])
    with pytest.raises(TableSchemaError, match="already exists"):
        table.add_column("a", [1, 2])


# --- wandb internals canaries ---------------------------------------------------------
def test_wandb_internals_we_rely_on_exist(wandb_env):
    art = wandb.Artifact("a", "x")
    assert isinstance(art._client_id, str) and len(art._client_id) > 20
    assert isinstance(art._added_local_paths, dict)
    image = wandb.Image(np.zeros((4, 4, 3), dtype=np.uint8))
    entry = art.add(ColumnarTable(["img"]), "empty")
    assert entry.path == "empty.table.json"
    table = ColumnarTable(["img"])
    table.add_data(image)
    art.add(table, "t")
    name = art.get_added_local_path_name(image._path)
    assert name is not None and name.startswith("media/images/")
    assert art._added_local_paths[image._path].path == name
    image._free_ram()
    assert image._image is None and image.image is not None  # reloads from its file


def test_client_reference_entries_resolve_locally(wandb_env):
    data = wandb.Artifact("data", "dataset")
    image = wandb.Image(np.full((4, 4, 3), 7, dtype=np.uint8))
    table = ColumnarTable(["img"])
    table.add_data(image)
    data.add(table, "t")
    name = data.get_added_local_path_name(image._path)
    pred = wandb.Artifact("pred", "evaluation")
    uri = f"{CLIENT_REF_SCHEME}://{data._client_id}/{name}"
    assert WBLocalArtifactHandler().can_handle(__import__("urllib.parse").parse.urlparse(uri))
    pred.add_reference(uri, name=name)
    entry = pred.manifest.entries[name]
    assert entry.ref == uri and entry.digest == data.manifest.entries[name].digest
