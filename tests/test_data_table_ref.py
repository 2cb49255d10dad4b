"""``data_table_ref`` is a table: held against a stock ``wandb.Table`` of the same rows.

Stock's ``data_table_ref`` is ``data_artifact.get(table_name)``, a real ``wandb.Table``;
every reading method is compared with a ``wandb.Table`` built from the very rows the
callback logged, and the links a ``get_index()`` value records in a pred table are
compared with what stock records for the same table, read from the offline run.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import wandb
from wandb.sdk.data_types.table import _TableIndex

from fastevalcb import DataTableRef, FastEvalWarning, WandbEvalCallback
from fastevalcb.tables import _wandb

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")

COLUMNS = ["id", "image", "label", "score"]


class Recorder(WandbEvalCallback):
    """Stock-style: images + labels in the data table; the index column in pred rows."""

    def __init__(self, x, y, **kwargs):
        super().__init__(COLUMNS, ["epoch", "row", "image", "pred"], **kwargs)
        self.x, self.y = x, y
        self.refs = []

    def add_ground_truth(self, logs=None):
        for i, (image, label) in enumerate(zip(self.x, self.y)):
            self.data_table.add_data(i, wandb.Image(image), int(label), float(i) / 4)

    def add_model_predictions(self, epoch, logs=None):
        ref = self.data_table_ref
        self.refs.append(ref)
        preds = np.argmax(self.model.predict(self.x, verbose=0), axis=-1)
        for idx in ref.get_index():
            self.pred_table.add_data(epoch, idx, ref.data[idx][1], int(preds[idx]))


@pytest.fixture
def logged(offline_run, tiny_classifier):
    run, read = offline_run
    model, x, y = tiny_classifier
    x, y = x[:6], y[:6]
    cb = Recorder(x, y)
    model.fit(x, y, epochs=1, batch_size=6, callbacks=[cb], verbose=0)
    ref = cb.refs[0]
    stock = wandb.Table(columns=list(ref.columns), data=[list(row) for row in ref.data])
    return run, read, ref, stock


def test_it_is_a_wandb_table_with_stocks_data_and_columns(logged):
    _, _, ref, stock = logged
    assert isinstance(ref, wandb.Table) and isinstance(ref, DataTableRef)
    assert ref.columns == stock.columns == COLUMNS
    assert ref.data == stock.data and len(ref) == len(stock.data) == 6


def test_get_index_iterrows_and_index_ref_give_stocks_indices(logged):
    _, _, ref, stock = logged
    assert ref.get_index() == stock.get_index() == list(range(6))
    assert [(int(i), row) for i, row in ref.iterrows()] == [
        (int(i), row) for i, row in stock.iterrows()
    ]
    assert ref.index_ref(3) == stock.index_ref(3) == 3
    with pytest.raises(AssertionError):  # as stock: past the last row
        ref.index_ref(6)
    with pytest.raises(AssertionError):
        stock.index_ref(6)


def test_index_values_are_stocks_linked_table_index(logged):
    _, _, ref, stock = logged
    assert all(type(i) is _TableIndex and i._table is ref for i in ref.get_index())
    assert all(i._table is ref for i, _ in ref.iterrows())
    assert ref.index_ref(3)._table is ref
    assert ref.get_index()[2].get_row() == stock.get_index()[2].get_row()


@pytest.mark.parametrize("name", ["id", "label", "score", "image"])
def test_get_column_as_list_and_numpy_is_stocks(logged, name):
    _, _, ref, stock = logged
    assert ref.get_column(name) == stock.get_column(name)
    if name == "image":  # media: the logged objects themselves, in both
        assert all(a is b for a, b in zip(ref.get_column(name), stock.get_column(name)))
        return
    ours, theirs = ref.get_column(name, convert_to="numpy"), stock.get_column(name, "numpy")
    assert isinstance(ours, np.ndarray) and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_get_column_of_an_unknown_name_fails_as_stocks(logged):
    _, _, ref, stock = logged
    with pytest.raises(AssertionError):
        stock.get_column("nope")
    with pytest.raises(AssertionError):
        ref.get_column("nope")


def test_get_dataframe_is_stocks(logged):
    _, _, ref, stock = logged
    ours, theirs = ref.get_dataframe(), stock.get_dataframe()
    pd.testing.assert_frame_equal(ours, theirs)
    assert list(ours.columns) == COLUMNS


def test_cast_and_the_extras(logged):
    _, _, ref, stock = logged
    assert repr(ref.cast("label", "int" and int)) == repr(stock.cast("label", int))
    assert ref[2]["label"] == ref.data[2][2] and ref[2][0] == 2
    assert [row["id"] for row in ref] == list(range(6))
    with pytest.raises(KeyError, match="no column 'nope'"):
        ref[0]["nope"]


def test_ndarray_where_stock_has_it(logged):
    _, _, ref, stock = logged
    assert hasattr(ref, "ndarray") == hasattr(stock, "ndarray")


def _pred_table_links(log, version):
    """``{column: (its wb_type, the entry its table param names)}`` of a pred version's
    ``foreignIndex`` columns (alone or in a union)."""
    table = log.load_table(version, "eval_data")
    out = {}
    for column, wb_type in table.column_types["params"]["type_map"].items():
        options = [wb_type] + wb_type.get("params", {}).get("allowed_types", [])
        for option in options:
            if option.get("wb_type") == "foreignIndex":
                out[column] = (wb_type, version.entries[option["params"]["table"]])
    return out, table


@pytest.mark.fast_path
def test_a_get_index_value_in_a_pred_table_records_stocks_link_to_the_data_table(logged):
    run, read, ref, stock = logged
    # Stock in the same run: its table logged in a data artifact, its index values in a pred
    # table logged in another (what stock's callback does, offline).
    data_artifact = wandb.Artifact("stock_val", type="dataset")
    data_artifact.add(stock, "val_data")
    run.log_artifact(data_artifact)
    pred = wandb.Table(columns=["epoch", "row", "image", "pred"])
    for idx in stock.get_index():
        pred.add_data(0, idx, stock.data[idx][1], 0)
    pred_artifact = wandb.Artifact("stock_pred", type="evaluation")
    pred_artifact.add(pred, "eval_data")
    run.log_artifact(pred_artifact)
    log = read()

    theirs, their_table = _pred_table_links(log, log.artifact("stock_pred"))
    assert set(theirs) == {"row"}
    their_type, entry = theirs["row"]
    assert their_type == {"wb_type": "foreignIndex", "params": {"table": entry.path}}
    assert entry.ref == (
        f"wandb-client-artifact://{log.artifact('stock_val').client_id}/val_data.table.json"
    )
    assert entry.digest == log.artifact("stock_val").entries["val_data.table.json"].digest

    ours_version = log.artifact(f"run_{run.id}_pred")
    ours, our_table = _pred_table_links(log, ours_version)
    assert set(ours) == {"row"}, our_table.column_types
    our_type, entry = ours["row"]
    assert our_type == {"wb_type": "foreignIndex", "params": {"table": entry.path}}  # as stock
    assert entry.path.startswith("media/tables/t_") and entry.path.endswith(".table.json")
    val = log.artifact("val")
    assert entry.ref == f"wandb-client-artifact://{val.client_id}/val_data.table.json"
    assert entry.digest == val.entries["val_data.table.json"].digest
    assert entry.size == 0  # a reference, as stock's
    assert our_table.column("row") == their_table.column("row") == list(range(6))
    assert ref.link is not None and ref.link.client_id == val.client_id


@pytest.mark.fast_path
def test_media_cells_stay_references_not_copies(logged):
    run, read, _ref, _ = logged
    log = read()
    version, val = log.artifact(f"run_{run.id}_pred"), log.artifact("val")
    table = log.load_table(version, "eval_data")
    paths = [cell["path"] for cell in table.column("image")]
    assert paths and all(version.entries[p].is_reference for p in paths)
    assert all(version.entries[p].referenced_client_id == val.client_id for p in paths)
    stored = {e.path for e in version.entries.values() if not e.is_reference}
    assert not any(p.startswith("media/images") for p in stored), stored
    assert json.dumps(table.column("image")[0])  # cells are the image JSON stock writes


def _fit_two_epochs(offline_run, tiny_classifier):
    run, read = offline_run
    model, x, y = tiny_classifier
    cb = Recorder(x[:6], y[:6])
    model.fit(x[:6], y[:6], epochs=2, batch_size=6, callbacks=[cb], verbose=0)
    log = read()
    versions = log.artifacts(f"run_{run.id}_pred")
    assert len(versions) == 2 == len(cb.logged_versions)
    return log, log.artifact("val"), versions


@pytest.mark.fast_path
def test_every_version_links_the_logged_data_table_and_stores_no_copy(offline_run, tiny_classifier):
    log, val, versions = _fit_two_epochs(offline_run, tiny_classifier)
    data = log.read_json(val, "val_data.table.json")
    for version in versions:
        links, table = _pred_table_links(log, version)
        _type, entry = links["row"]
        assert entry.referenced_client_id == val.client_id
        assert entry.referenced_path == "val_data.table.json" and entry.size == 0
        assert log.read_json(version, entry.path) == data  # resolves to the data table
        assert table.column("row") == list(range(6))
        stored = [e.path for e in version.entries.values() if not e.is_reference]
        assert stored == ["eval_data.table.json"]  # no copy of the data table, nor of media


def _assert_links_a_copy(log, val, versions, media_copied):
    """Each version's ``row`` column names a copy of the data table stored in the version
    (wandb's path), its images copies too (``media_copied``) or references to the data
    artifact's files."""
    data = log.read_json(val, "val_data.table.json")
    for version in versions:
        links, table = _pred_table_links(log, version)
        wb_type, entry = links["row"]
        assert wb_type == {"wb_type": "foreignIndex", "params": {"table": entry.path}}
        assert not entry.is_reference and entry.path.startswith("media/tables/")
        copy = log.read_json(version, entry.path)
        assert copy["columns"] == data["columns"] == COLUMNS
        assert [row[0] for row in copy["data"]] == [row[0] for row in data["data"]]
        assert [row[2:] for row in copy["data"]] == [row[2:] for row in data["data"]]
        for row in copy["data"]:  # its images are the data table's files
            image = version.entries[row[1]["path"]]
            assert image.is_reference != media_copied
            assert log.resolve(version, image.path)[1].digest == val.entries[image.path].digest
        assert table.column("row") == list(range(6))


def test_wandbs_public_path_links_the_data_table_by_a_copy_in_every_version(
    offline_run, tiny_classifier, monkeypatch
):
    """FASTEVALCB_SAFE=1: ``Artifact.add(table)`` links a table it has no logged artifact
    for only by adding it, so every version holds a copy of the data table; the second
    version writes its own copy instead of referencing the first (out of wandb's cache)."""
    monkeypatch.setenv("FASTEVALCB_SAFE", "1")
    _assert_links_a_copy(*_fit_two_epochs(offline_run, tiny_classifier), media_copied=True)


@pytest.fixture
def fresh_checks():
    _wandb.reset_checks()
    yield
    _wandb.reset_checks()


@pytest.mark.fast_path
def test_without_the_links_internals_wandb_copies_the_data_table_and_warns_once(
    fresh_checks, offline_run, tiny_classifier, monkeypatch
):
    def gone(*args, **kwargs):
        raise AttributeError("simulated: this wandb has no internal behind set_added_entry()")

    monkeypatch.setattr(_wandb, "set_added_entry", gone)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        log, val, versions = _fit_two_epochs(offline_run, tiny_classifier)
    ours = [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]
    assert len(ours) == 1 and "fast path 'links'" in ours[0] and "set_added_entry" in ours[0]
    _assert_links_a_copy(log, val, versions, media_copied=False)  # media: still references
