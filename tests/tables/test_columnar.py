"""fastevalcb.tables.columnar: ColumnarTable writes what wandb.Table writes (rows or
columns, numpy values, NaNs in lists), and refuses bad columns as wandb would."""

from __future__ import annotations

import json

import numpy as np
import pytest
import wandb

from fastevalcb.tables import ColumnarTable, TableSchemaError


def _table_json(artifact, table, name="t"):
    """What our one writer (``tables.add_table``) records for ``table``; wandb's own
    ``Artifact.add`` for a plain ``wandb.Table``."""
    from fastevalcb.tables import add_table

    entry = (
        add_table(artifact, table, name)
        if isinstance(table, ColumnarTable)
        else artifact.add(table, name)
    )
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


@pytest.mark.parametrize("columns", [["epoch", "", "pred"], ["epoch", "  "]])
def test_blank_column_names_are_refused_like_duplicates(columns):
    from fastevalcb.tables import validate_columns

    with pytest.raises(
        TableSchemaError,
        match=r"pred_table_columns names must be non-empty, "
        r"got '\s*' at position 1",
    ):
        validate_columns(columns, "pred_table_columns")
    with pytest.raises(TableSchemaError, match="must be non-empty"):
        ColumnarTable(columns)


@pytest.mark.fast_path
def test_lists_of_numbers_with_nans_keep_their_number_type(wandb_env):
    """A NaN in a list of numbers (a model's NaN row: top-k scores) must not make the
    column Invalid: wandb types NaN as None, [0.5, nan] as Invalid[] and would refuse the
    table. The NaN is written as null, as wandb writes a NaN (JSON has none); the column
    is typed as its numbers."""
    from fastevalcb.tables import StreamedTable, add_table

    nan = float("nan")
    finite = ColumnarTable(["s"])
    finite.add_columns({"s": [[0.5, 0.25], [1.0, 0.0]]})
    expected = _table_json(wandb.Artifact("a", "x"), finite)["column_types"]
    mixed = ColumnarTable(["s"])
    mixed.add_columns({"s": [[0.5, 0.25], [nan, nan], [0.75, nan]]})
    ours = _table_json(wandb.Artifact("b", "x"), mixed)
    assert ours["column_types"] == expected
    assert ours["data"][1][0] == [None, None] and ours["data"][2][0] == [0.75, None]
    art = wandb.Artifact("c", "x")
    streamed = StreamedTable(["s"], art)
    streamed.add_columns({"s": [[0.5, 0.25]]})
    streamed.add_columns({"s": [[nan, nan], [0.75, nan]]})
    assert (
        json.loads(open(add_table(art, streamed, "t").local_path).read())["column_types"]
        == expected
    )


# -- a column of a logged data table's row indices (get_index() values) ------------------
def test_a_column_of_table_links_is_typed_as_wandb_types_it(wandb_env):
    """wandb.Table.add_data casts a column to the links' ``foreignIndex`` type, not optional,
    plain ints before the first link included (wandb-internal: _TableLinkMixin,
    _ForeignIndexType.params["table"]); ours types it the same at serialization."""
    from fastevalcb.tables import _wandb
    from fastevalcb.tables.columnar import _column_to_json

    data = wandb.Table(columns=["a"], data=[[1], [2], [3]])
    values = [0, *data.get_index()[1:]]  # a plain int first, then links
    ours, theirs = ColumnarTable(["i"]), wandb.Table(columns=["i"])
    for value in values:
        ours.add_data(value)
        theirs.add_data(value)
    assert [_wandb.is_table_link(v) for v in values] == [False, True, True]
    our_type = ours._infer_column_type("i", values)
    their_type = _wandb.column_type_map(theirs)["i"]
    assert repr(our_type) == repr(their_type) and "none" not in repr(our_type).lower()
    assert _wandb.linked_tables({"i": our_type, "j": their_type}) == [data]
    assert _column_to_json(values, wandb.Artifact("x", "y")) == [0, 1, 2]
    assert [type(v) for v in _column_to_json(values, None)] == [int] * 3
