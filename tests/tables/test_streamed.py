"""fastevalcb.tables.streamed: a StreamedTable, serialized batch by batch, writes the text a
ColumnarTable writes, and leaves no file when dropped unwritten."""

from __future__ import annotations

import gc
import json
import os

import pytest
import wandb
from wandb.sdk.artifacts.staging import get_staging_dir
from wandb.sdk.lib.hashutil import md5_file_b64

from fastevalcb.tables import ColumnarTable, TableSchemaError
from tests.helpers.tables import batch_cells, mixed_batches


@pytest.mark.fast_path
def test_a_streamed_table_dropped_unwritten_leaves_no_file(wandb_env):
    from fastevalcb.tables import StreamedTable

    table = StreamedTable(["x"], wandb.Artifact("a", "x"))
    table.add_columns({"x": [1, 2]})
    assert json.loads(table.json_text())["data"] == [[1], [2]]  # written so far, finished
    path = table._file.name
    assert os.path.dirname(path) == get_staging_dir() and os.path.exists(path)
    table.close()  # a version dropped after a logging failure
    assert not os.path.exists(path)
    with pytest.raises(TableSchemaError, match="closed unwritten"):
        table.json_text()
    kept = StreamedTable(["x"], wandb.Artifact("b", "x"))
    kept.add_columns({"x": [3]})
    path = kept._file.name
    del kept  # dropped without close(): removed when collected
    gc.collect()
    assert not os.path.exists(path)


@pytest.mark.fast_path
def test_streamed_table_writes_what_a_columnar_table_writes(wandb_env):
    from fastevalcb.tables import StreamedTable, add_table, num_rows

    batches = mixed_batches()
    columns = list(batches[0])
    from fastevalcb.tables import Stager

    stock_art, ours_art = wandb.Artifact("a", "dataset"), wandb.Artifact("b", "dataset")
    whole = ColumnarTable(columns)
    streamed = StreamedTable(columns, ours_art)
    stager = Stager(ours_art)  # files staged as the task callbacks do: our image JSON path
    for batch in batches:
        whole.add_columns(batch_cells(batch))
        streamed.add_columns(batch_cells(batch, stager))
    assert num_rows(streamed) == 6 and streamed.data == []  # no row kept as Python
    stock_entry = add_table(stock_art, whole, "t")
    ours_entry = add_table(ours_art, streamed, "t")
    assert open(ours_entry.local_path).read() == open(stock_entry.local_path).read()
    assert streamed.json_text() == open(ours_entry.local_path).read()
    # wandb's own serialization of the same rows, for the parts it writes the same way
    stock = json.loads(open(stock_entry.local_path).read())
    assert (
        stock["column_types"]
        == json.loads(open(wandb.Artifact("c", "dataset").add(whole, "t").local_path).read())[
            "column_types"
        ]
    )
    assert sorted(ours_art.manifest.entries) == sorted(stock_art.manifest.entries)
    for name, entry in stock_art.manifest.entries.items():
        if name != "t.table.json":  # ours writes "data" first: other bytes, same JSON
            ours = ours_art.manifest.entries[name]  # class files: add_json, not Artifact.add
            assert (ours.digest, ours.size, ours.ref, bool(ours.skip_cache)) == (
                entry.digest,
                entry.size,
                entry.ref,
                bool(entry.skip_cache),
            ), name
            assert open(ours.local_path, "rb").read() == open(entry.local_path, "rb").read()
    # The digest computed as the table was written is the file's (what add_file computes).
    assert ours_entry.digest == md5_file_b64(ours_entry.local_path)
    assert ours_entry.size == os.path.getsize(ours_entry.local_path)
    assert os.stat(ours_entry.local_path).st_mode & 0o777 == 0o400
    with pytest.raises(TableSchemaError, match="fixed"):
        streamed.add_column("more", [1] * 6)
    with pytest.raises(ValueError, match="artifact it was serialized into"):
        add_table(wandb.Artifact("d", "dataset"), streamed, "t")


@pytest.mark.fast_path
@pytest.mark.parametrize(
    "batches",
    [
        [[float("inf"), -float("inf")], [1.5, float("nan")], [2.0, 3.0]],  # inf - inf is NaN
        [[1.5, 2.5], [float("nan"), 1.0], [None, 2.0], [1, 2]],
        [["a", "b"], ["c", None], ["d", "e"]],
        [[True, False], [True, True]],
    ],
)
def test_streamed_column_types_are_wandbs_batch_after_batch(wandb_env, batches):
    """A batch of scalars whose kinds were typed before skips wandb's type work (its key:
    the Python types and whether a float is NaN); the column types must still be what
    wandb's own ``add_data`` makes of the same rows, in the same order."""
    from fastevalcb.tables import StreamedTable

    ours = StreamedTable(["x"], wandb.Artifact("a", "dataset"))
    for batch in batches:
        ours.add_columns({"x": batch})
    stock = wandb.Table(columns=["x"], data=[[v] for batch in batches for v in batch])
    written = wandb.Artifact("b", "dataset").add(stock, "t").local_path
    expected = json.loads(open(written).read())["column_types"]
    assert json.loads(ours.json_text())["column_types"] == expected


@pytest.mark.fast_path
@pytest.mark.parametrize("first, later", [(["a", "b"], [1, 2]), ([1.5, 2.0], [True, False])])
def test_a_later_batch_of_another_kind_is_still_checked(wandb_env, first, later):
    """The per-kind cache skips only kinds already typed: a new kind is merged, and one
    wandb cannot merge is refused as wandb refuses it."""
    from fastevalcb.tables import StreamedTable

    ours = StreamedTable(["x"], wandb.Artifact("a", "dataset"))
    ours.add_columns({"x": first})
    ours.add_columns({"x": first[::-1]})  # a known kind: from the cache
    with pytest.raises(TypeError):
        wandb.Table(columns=["x"], data=[[v] for v in first + later])
    with pytest.raises(TypeError, match="column 'x' mixes incompatible types"):
        ours.add_columns({"x": later})
