"""ColumnarTable vs wandb.Table, and canaries for the wandb internals fastevalcb.tables relies on.

If a wandb release changes one of these, these tests fail first and say which.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import types
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import wandb
from wandb.sdk.artifacts.staging import get_staging_dir
from wandb.sdk.artifacts.storage_handlers.wb_local_artifact_handler import WBLocalArtifactHandler
from wandb.sdk.lib.hashutil import md5_file_b64

from fastevalcb.media import build_images
from fastevalcb.tables import (
    CLIENT_REF_SCHEME,
    IMAGE_DIR,
    IMAGE_SUFFIX,
    ColumnarTable,
    TableSchemaError,
)
from fastevalcb.tables.references import ImageColumn, MediaFiles
from fastevalcb.tables.staging import EntryRows, EntryView
from fastevalcb.types import PackedDetections


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
    # tables._wandb.scope_manifest reads the size past which wandb sends a manifest as its
    # file; the end-to-end check is test_large_manifests_go_as_wandbs_manifest_file.
    from wandb.sdk.interface import interface

    assert isinstance(interface.MANIFEST_FILE_SIZE_THRESHOLD, int)


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


def _image_table(images, labels):
    table = ColumnarTable(["image", "label", "top"])
    table.add_columns({"image": images, "label": labels, "top": [[lab, "x"] for lab in labels]})
    return table


def test_fast_reference_entries_and_table_json_match_wandbs_own(wandb_env):
    """The shortcuts in MediaIndex.reference_entry and add_table write what wandb would."""
    from fastevalcb.tables import MediaIndex, add_table

    rng = np.random.default_rng(0)
    images = [wandb.Image(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(3)]
    data = wandb.Artifact("data", "dataset")
    data_table = _image_table(images, ["a", "b", "c"])
    data.add(data_table, "val")
    index = MediaIndex.from_table(data, data_table)
    assert len(index) == 3

    slow, fast = wandb.Artifact("slow", "evaluation"), wandb.Artifact("fast", "evaluation")
    for image in images:
        name = index.entry_name(image)
        slow.add_reference(index.reference_uri(name), name=name)
        fast.manifest.entries[name] = index.reference_entry(
            name, data.manifest.entries[name].digest
        )
        ours, stock = fast.manifest.entries[name], slow.manifest.entries[name]
        assert type(ours) is type(stock) and type(ours.path) is type(stock.path)
        assert vars(ours) == vars(stock)  # field by field, as add_reference builds it
        assert ours == stock  # and pydantic's bookkeeping (wandb >= 0.21), as model_construct's
        assert getattr(ours, "__pydantic_private__", None) == getattr(
            stock, "__pydantic_private__", None
        )
    assert fast.manifest.to_manifest_json() == slow.manifest.to_manifest_json()

    pred = _image_table(images, ["b", "b", "c"])
    index.add_references(fast, pred)
    pred.media_index = index
    fast_entry = add_table(fast, pred, "eval")
    stock_pred = _image_table(images, ["b", "b", "c"])
    index.add_references(slow, stock_pred)
    slow_entry = slow.add(stock_pred, "eval")
    assert _canonical(open(fast_entry.local_path).read()) == _canonical(
        open(slow_entry.local_path).read()
    )
    assert fast_entry.path == slow_entry.path == "eval.table.json"
    fast_json, slow_json = (m.manifest.to_manifest_json() for m in (fast, slow))
    for manifest in (fast_json, slow_json):  # ours writes "data" first: other table bytes
        manifest["contents"].pop("eval.table.json")
    assert fast_json == slow_json


# -- media objects built from our files (tables.new_image & co.) mirror stock's -----
def test_objects_have_exactly_the_stock_attributes():
    img = np.zeros((6, 8, 3), np.uint8)
    labels = {0: "a", 1: "b"}
    det = PackedDetections([0, 1], [[1, 1, 4, 4]], [1], [0.5])
    mask = np.zeros((1, 6, 8), np.uint8)
    (fast,) = build_images(
        img[None], boxes={"predictions": det}, masks={"m": mask}, class_labels=labels
    )
    stock = wandb.Image(
        img,
        boxes={"predictions": {"box_data": [], "class_labels": labels}},
        masks={"m": {"mask_data": mask[0], "class_labels": labels}},
    )
    pairs = [
        (fast, stock),
        (fast._boxes["predictions"], stock._boxes["predictions"]),
        (fast._masks["m"], stock._masks["m"]),
        (fast._classes, stock._classes),
    ]
    for f, s in pairs:
        assert type(f) is type(s)
        assert set(vars(f)) == set(vars(s)), type(s).__name__
        for k in vars(s):
            assert type(getattr(f, k)) is type(getattr(s, k)), (type(s).__name__, k)
    assert fast._classes._class_set == stock._classes._class_set
    assert (fast._width, fast._height, fast.format) == (stock._width, stock._height, stock.format)
    assert fast._boxes["predictions"]._extension == stock._boxes["predictions"]._extension
    assert fast._masks["m"]._extension == stock._masks["m"]._extension


# -- Stager: media written straight into the artifact's staging, as add_file would -----
def _staged_table(artifact, stager):
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    mask = (np.arange(48) % 3).astype(np.uint8).reshape(1, 6, 8)
    images = build_images(
        img[None],
        masks={"m": mask},
        class_labels={0: "a", 1: "b", 2: "c"},
        stager=stager,
        compress_level=None,
    )  # reproducible: see _batch_cells
    table = ColumnarTable(["id", "image"])
    table.add_columns({"id": [0], "image": images})
    entry = artifact.add(table, "t")
    return json.loads(open(entry.local_path).read()), images[0]


@pytest.mark.fast_path
def test_staged_files_are_the_entries_add_file_makes(wandb_env):
    from fastevalcb.tables import Stager

    stock_art, ours_art = wandb.Artifact("stock", "dataset"), wandb.Artifact("ours", "dataset")
    stock_json, _ = _staged_table(stock_art, None)  # temp files, copied by add_file
    ours_json, image = _staged_table(ours_art, Stager(ours_art))
    assert ours_json == stock_json  # same names, digests and sizes in the table JSON
    ours_entries = ours_art.manifest.entries
    assert isinstance(ours_entries, EntryRows)  # the staged files are rows, not objects
    stock_names = sorted(k for k in stock_art.manifest.entries if k != "t.table.json")
    assert sorted(k for k in ours_entries if k != "t.table.json") == stock_names
    assert len(stock_names) == 3  # image, mask, class set
    views = dict(ours_entries.items())
    for name in stock_names:
        stock, ours = stock_art.manifest.entries[name], ours_entries[name]
        assert type(ours) is type(stock) and type(ours.path) is type(stock.path)
        skip = {"local_path"}
        assert {k: v for k, v in vars(ours).items() if k not in skip} == {
            k: v for k, v in vars(stock).items() if k not in skip
        }, name
        if not name.startswith("media/classes/"):  # wandb adds the class set itself
            _assert_view_reads_as(views[name], ours)
        # The staging copy is the media file itself, read-only like add_file's copy.
        assert open(ours.local_path, "rb").read() == open(stock.local_path, "rb").read()
        assert os.stat(ours.local_path).st_mode & 0o777 == os.stat(stock.local_path).st_mode & 0o777
    entry_path = ours_json["data"][0][1]["path"]
    assert image._path == ours_entries[entry_path].local_path
    # wandb-internal the Stager fills: its files resolve by path, without a key each
    assert ours_art.get_added_local_path_name(image._path) == entry_path
    assert vars(ours_art._added_local_paths[image._path]) == vars(ours_entries[entry_path])
    assert f"{image._path}-not-staged" not in ours_art._added_local_paths


def _assert_view_reads_as(view, entry):
    """An EntryView gives wandb's logging path what the entry it stands for gives."""
    assert isinstance(view, EntryView)
    for field in (
        "path",
        "digest",
        "size",
        "ref",
        "local_path",
        "birth_artifact_id",
        "skip_cache",
        "extra",
    ):
        assert getattr(view, field) == getattr(entry, field), field
    for _ in range(2):  # the first view of a source learns its keys from the real entry
        # what wandb writes manifests of >100k entries from, as json.dumps writes it
        assert json.dumps(view.to_json()) == json.dumps(entry.to_json())


@pytest.mark.fast_path
def test_entry_rows_log_as_the_entries_they_stand_for(wandb_env):
    """An artifact whose entries are rows makes the manifest record, digest and size that
    the same entries as objects make (wandb-internal: interface._make_artifact_manifest)."""
    from wandb.sdk.interface.interface import InterfaceBase

    from fastevalcb.tables import MediaIndex, Stager
    from fastevalcb.tables.staging import entry_rows

    rng = np.random.default_rng(1)
    data = wandb.Artifact("data", "dataset")
    stager = Stager(data)
    # PIL's bytes: ISA-L's are not always the same for the same pixels (see _batch_cells)
    images = build_images(
        rng.integers(0, 255, (5, 4, 6, 3), dtype=np.uint8), stager=stager, compress_level=None
    )
    images += build_images(
        np.zeros((2, 4, 6, 3), np.uint8), stager=stager, compress_level=None
    )  # a duplicate: one file, one entry
    files = MediaFiles.of(images, stager, IMAGE_DIR, IMAGE_SUFFIX)
    pred = wandb.Artifact("pred", "evaluation")
    MediaIndex.from_files(data, [files]).add_column_references(pred, files, slice(0, len(files)))
    assert len(data.manifest.entries) == 6 and len(pred.manifest.entries) == 6
    # an entry object after the rows (pred), between rows of one source (data)
    for artifact in (data, pred):
        with artifact.new_file("notes.txt") as f:
            f.write("an entry object")
    stager.write(b"a later file", IMAGE_DIR, IMAGE_SUFFIX)
    for artifact in (data, pred):
        rows = artifact.manifest.entries
        assert isinstance(rows, EntryRows) and entry_rows(artifact) is rows
        objects = wandb.Artifact(artifact.name, artifact.type)
        objects.manifest.entries.update({name: rows[name] for name in rows})
        assert type(objects.manifest.entries) is dict
        assert artifact.manifest.digest() == objects.manifest.digest()
        assert artifact.size == objects.size
        assert artifact.manifest.to_manifest_json() == objects.manifest.to_manifest_json()
        make = InterfaceBase._make_artifact_manifest
        assert make(None, artifact.manifest) == make(None, objects.manifest)
        for name, view in rows.items():
            if name != "notes.txt":
                _assert_view_reads_as(view, rows[name])
        _assert_bulk_manifest_is_wandbs(artifact.manifest, objects.manifest)


def _assert_bulk_manifest_is_wandbs(rows, objects):
    """A manifest of rows given the scoped subclass (ours alone) hashes them in bulk to the
    digest wandb's own code makes of the same entries as objects, and wandb's own writer
    writes the same manifest file from either; no wandb class changes
    (wandb-internal: InterfaceBase._write_artifact_manifest_file, ArtifactManifestV1.digest)."""
    import gzip

    from wandb.sdk.artifacts.artifact_manifests.artifact_manifest_v1 import ArtifactManifestV1
    from wandb.sdk.interface.interface import InterfaceBase

    from fastevalcb.tables import _wandb

    wandb_write = InterfaceBase._write_artifact_manifest_file
    wandb_digest = ArtifactManifestV1.digest
    assert type(rows) is ArtifactManifestV1 and type(objects) is ArtifactManifestV1
    wandb_digest_of_rows = rows.digest()
    carrier = types.SimpleNamespace(manifest=rows)
    _wandb.scope_manifest(carrier, rows.entries.digest_lines)
    assert type(rows) is not ArtifactManifestV1 and isinstance(rows, ArtifactManifestV1)
    assert type(objects) is ArtifactManifestV1  # other manifests keep wandb's class
    assert ArtifactManifestV1.digest is wandb_digest  # and wandb's class its methods
    assert InterfaceBase._write_artifact_manifest_file is wandb_write
    assert rows.digest() == wandb_digest(objects) == objects.digest() == wandb_digest_of_rows
    assert len(rows) == len(objects.entries)  # few entries: the record, as wandb sends it
    ours_file, wandb_file = wandb_write(None, rows), wandb_write(None, objects)
    text = [gzip.open(f, "rt", encoding="utf-8").read() for f in (ours_file, wandb_file)]
    assert text[0] == text[1] and text[0].count("\n") == len(objects.entries)
    assert any(type(value) is int for value in dict.values(rows.entries))
    for chunk in (1, 2, 3):  # hashed a few entries at a time: the same text
        assert "".join(rows.entries.digest_lines(chunk)) == "".join(rows.entries.digest_lines())
    assert any(type(value) is not int for value in dict.values(rows.entries))


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


# --- the run's lifetime (wandb internals: Run._teardown_hooks, TeardownHook, _is_finished) --
def test_wandb_teardown_hooks_we_rely_on_exist(wandb_env):
    """``Run._finish`` calls EARLY hooks while the run still logs, then marks it finished."""
    from wandb.sdk.wandb_run import TeardownHook, TeardownStage

    assert TeardownHook._fields == ("call", "stage") and TeardownStage.EARLY < TeardownStage.LATE
    run = wandb.init(project="canary", dir=str(wandb_env / "run"))
    assert isinstance(run._teardown_hooks, list)
    assert run._is_finished is False
    seen = []
    run._teardown_hooks.append(
        TeardownHook(call=lambda: seen.append(run._is_finished), stage=TeardownStage.EARLY)
    )
    run.finish()
    assert seen == [False] and run._is_finished is True


@pytest.mark.parametrize("end", ["run.finish", "wandb.finish", "reinit"])
def test_on_run_finish_runs_while_the_run_still_logs(wandb_env, end):
    from fastevalcb.offline import OfflineRun
    from fastevalcb.tables import on_run_finish, run_finished

    run = wandb.init(project="canary", dir=str(wandb_env / "run"))
    states = []

    def log_last():
        states.append(run_finished(run))
        run.log({"last": 1})  # raises UsageError once the run is finished

    on_run_finish(run, log_last)
    if end == "run.finish":
        run.finish()
    elif end == "wandb.finish":
        wandb.finish()
    else:
        wandb.init(project="canary", dir=str(wandb_env / "run"), reinit="finish_previous")
        wandb.finish()
    assert states == [False] and run_finished(run)
    log = OfflineRun(Path(run.dir).parent).wait_complete()
    assert [r["last"] for r in log.history() if "last" in r] == [1]


def test_image_json_of_a_referenced_image_is_wandbs(wandb_env):
    """MediaIndex.image_json builds the JSON wandb's Image.to_json writes, caption or not."""
    from wandb.sdk.data_types.utils import _json_helper

    from fastevalcb.tables import MediaIndex

    rng = np.random.default_rng(1)
    images = [
        wandb.Image(rng.integers(0, 255, (5, 7, 3), dtype=np.uint8), caption=c)
        for c in (None, "a caption")
    ]
    data = wandb.Artifact("data", "dataset")
    data_table = _image_table(images, ["a", "b"])
    data.add(data_table, "val")
    index = MediaIndex.from_table(data, data_table)
    pred = wandb.Artifact("pred", "evaluation")
    index.add_references(pred, _image_table(images, ["a", "b"]))
    for image in images:
        assert index.image_json(image, pred) == _json_helper(image, pred)


def test_wandb_caches_artifacts_by_client_id_and_a_logged_pred_version_is_dropped(offline_run):
    """Canary: wandb's instance cache (artifact_instance_cache_by_client_id) holds every
    Artifact made; log_pred_artifact takes its version out again (memory per version)."""
    from fastevalcb.tables import log_pred_artifact
    from fastevalcb.tables._wandb import artifact_cache_by_client_id

    run, _ = offline_run
    cache = artifact_cache_by_client_id()
    probe = wandb.Artifact("probe", "x")
    assert cache.get(probe._client_id) is probe
    table = ColumnarTable(["a"])
    table.add_columns({"a": [1, 2]})
    art = log_pred_artifact(run, table, None, "evaluation", "eval_data", ["latest"], {})
    # The table JSON is staged (it outlives the artifact object and the process), so the
    # version leaves the cache.
    json_path = art.manifest.entries["eval_data.table.json"].local_path
    assert json_path.startswith(get_staging_dir())
    assert art._client_id not in cache
    assert not art._added_objs  # the table and its media objects are let go
    del art
    gc.collect()
    assert os.path.exists(json_path)
    assert table._artifact_target is None  # the table <-> artifact cycle is broken


# -- StreamedTable: serialized batch by batch, the same text as a ColumnarTable ----------
def _mixed_batches():
    """Two batches of every kind of cell a task table holds, NaNs and boxes included."""
    rng = np.random.default_rng(3)
    labels = {0: "a", 1: "b"}
    batches = []
    for b in range(2):
        pixels = rng.integers(0, 255, (3, 6, 8, 3), dtype=np.uint8)
        det = PackedDetections(
            [0, 1, 1, 3], [[1, 1, 4, 4], [0, 0, 2, 3], [2, 2, 5, 5]], [1, 0, 1], [0.5, 0.25, 0.75]
        )
        scores = [[0.5, 0.1 * b], [0.25, 0.5], [1.0, 0.0]]
        batches.append(
            {
                "id": [3 * b + i for i in range(3)],
                "score": [0.5, float("nan"), 2.0] if b else [0.5, 1.5, 2.0],
                "name": ["x", "y", "z"],
                "ok": [True, False, True],
                "top": [["a", "b"]] * 3,
                "scores": scores,
                "image": pixels,
                "boxes": (pixels, det, labels),
                "masks": (
                    pixels,
                    (np.arange(3 * 6 * 8) % 2).astype(np.uint8).reshape(3, 6, 8),
                    labels,
                ),
            }
        )
    return batches


def _batch_cells(batch, stager=None, compress_level=None):
    """The batch's media cells. PIL encoding by default: the tables compared are built from
    two encodes of the same pixels, and only zlib's output is byte-for-byte reproducible.
    ISA-L's level 1 (our default) now and then deflates the same input to other bytes, both
    decoding to it (seen in CI, and in a stress run: threads encoding while others churn
    the heap); the fast path's pixels are checked in the test below."""
    pixels, det, labels = batch["boxes"]
    _, masks, _ = batch["masks"]
    build = functools.partial(build_images, stager=stager, compress_level=compress_level)
    return {
        **batch,
        "image": build(batch["image"]),
        "boxes": build(pixels, boxes={"predictions": det}, class_labels=labels),
        "masks": build(pixels, masks={"truth": masks}, boxes={"b": det}, class_labels=labels),
    }


def test_staged_media_decode_to_their_pixels_on_the_fast_encoder(wandb_env):
    """The default encoder (ISA-L when installed) on the pool, staged: every image and mask
    file in the artifact decodes to the pixels it was made from, batch after batch."""
    from fastevalcb.tables import Stager

    art = wandb.Artifact("b", "dataset")
    stager = Stager(art)
    for _ in range(20):
        for batch in _mixed_batches():
            cells = _batch_cells(batch, stager, compress_level=1)
            for image, pixels in zip(cells["image"] + cells["masks"], [*batch["image"]] * 2):
                np.testing.assert_array_equal(np.asarray(PIL.Image.open(image._path)), pixels)
            for image, mask in zip(cells["masks"], batch["masks"][1]):
                np.testing.assert_array_equal(
                    np.asarray(PIL.Image.open(image._masks["truth"]._path)), mask
                )


def _canonical(text: str) -> str:
    """A StreamedTable's JSON as json.dumps(..., sort_keys=True) writes it (it writes
    "data" first; the rest is the same text)."""
    return json.dumps(json.loads(text), sort_keys=True)


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

    batches = _mixed_batches()
    columns = list(batches[0])
    from fastevalcb.tables import Stager

    stock_art, ours_art = wandb.Artifact("a", "dataset"), wandb.Artifact("b", "dataset")
    whole = ColumnarTable(columns)
    streamed = StreamedTable(columns, ours_art)
    stager = Stager(ours_art)  # files staged as the task callbacks do: our image JSON path
    for batch in batches:
        whole.add_columns(_batch_cells(batch))
        streamed.add_columns(_batch_cells(batch, stager))
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
def test_image_column_pred_rows_are_wandbs_references(wandb_env):
    """A pred batch's ImageColumn (arrays) gives the table text and reference entries that
    the same images as wandb.Image objects give through MediaIndex.add_references."""
    from fastevalcb.media import stage_masks
    from fastevalcb.media.boxes import box_data_json
    from fastevalcb.tables import (
        IMAGE_DIR,
        IMAGE_SUFFIX,
        MASK_DIR,
        MASK_SUFFIX,
        LayeredImages,
        MediaFiles,
        MediaIndex,
        Stager,
        StreamedTable,
        add_table,
    )
    from fastevalcb.types import PackedDetections

    rng = np.random.default_rng(4)
    data = wandb.Artifact("data", "dataset")
    stager = Stager(data)
    parts = [
        MediaFiles.of(
            build_images(rng.integers(0, 255, (4, 5, 7, 3), dtype=np.uint8), stager=stager),
            stager,
            IMAGE_DIR,
            IMAGE_SUFFIX,
        )
        for _ in range(2)
    ]
    files = MediaFiles.concat(parts)
    assert len(files) == 8
    # A batch's lookup spans its own files' numbers, not all numbers before them: a data
    # table holds one MediaFiles per batch until the end (O(N) each was O(N^2) in all).
    later = parts[1]
    assert len(later._rows_by_counter()) == 4
    assert [later.row(later.file(i)[0]) for i in range(4)] == [0, 1, 2, 3]
    assert later.row(parts[0].file(3)[0]) is None and files.row(later.file(2)[0]) == 6
    index = MediaIndex.from_files(data, [files])
    rows = [slice(0, 3), slice(3, 8)]
    # The data table itself: its staged files as ImageColumns of their own artifact.
    own, as_objects = StreamedTable(["image"], data), ColumnarTable(["image"])
    for part in parts:
        own.add_columns({"image": ImageColumn(part, slice(0, 4))})
        as_objects.add_columns({"image": list(ImageColumn(part, slice(0, 4)))})
    assert own.json_text() == open(add_table(data, as_objects, "objects").local_path).read()
    with pytest.raises(ValueError, match="not a file of this table's artifact"):
        StreamedTable(["image"], wandb.Artifact("other", "dataset")).add_columns(
            {"image": ImageColumn(files, slice(0, 2))}
        )

    # Ground-truth masks, as a segmentation data table has them: layered images by reference.
    mask_files = MediaFiles.concat(
        [
            MediaFiles.of(
                [
                    im._masks["m"]
                    for im in build_images(
                        rng.integers(0, 255, (4, 5, 7, 3), dtype=np.uint8),
                        masks={"m": (np.arange(4 * 35) % 2).astype(np.uint8).reshape(4, 5, 7)},
                        class_labels={0: "a", 1: "b"},
                        stager=stager,
                    )
                ],
                stager,
                MASK_DIR,
                MASK_SUFFIX,
            )
            for _ in range(2)
        ]
    )
    index = MediaIndex.from_files(data, [files, mask_files])

    objects_art, arrays_art = wandb.Artifact("p1", "evaluation"), wandb.Artifact("p2", "evaluation")
    stagers = {art.name: Stager(art) for art in (objects_art, arrays_art)}
    labels = {0: "a", 1: "b"}
    columns = ["image", "layered", "predicted", "boxed", "n"]
    whole, streamed = ColumnarTable(columns), StreamedTable(columns, arrays_art, index)
    for r in rows:
        n = r.stop - r.start
        column = ImageColumn(files, r)
        layered = ImageColumn(files, r, mask_files, labels)
        assert isinstance(column[0], wandb.Image) and len(list(column)) == len(column)
        pred_masks = (rng.random((n, 5, 7)) < 0.5).astype(np.uint8)
        dets = PackedDetections(
            np.arange(n + 1) * 2,
            rng.uniform(0, 5, (2 * n, 4)).cumsum(1),
            rng.integers(0, 2, 2 * n),
            rng.random(2 * n),
        )
        cells = {}
        for name, stager in stagers.items():  # a version's masks, staged into its artifact
            predicted = LayeredImages(
                layered,
                labels,
                masks={"predictions": stage_masks(pred_masks, labels, stager).results()},
            )
            boxed = LayeredImages(
                column, labels, boxes={"predictions": box_data_json(dets, labels, "pixel", 2)}
            )
            cells[name] = {
                "image": column,
                "layered": layered,
                "predicted": predicted,
                "boxed": boxed,
                "n": list(range(r.start, r.stop)),
            }
        assert (
            predicted[1]._masks["predictions"]._sha256
            == cells["p1"]["predicted"][1]._masks["predictions"]._sha256
        )  # the same PNG in both artifacts
        whole.add_columns(
            {key: value if key == "n" else list(value) for key, value in cells["p1"].items()}
        )
        streamed.add_columns(cells["p2"])
    index.add_references(objects_art, whole)
    whole.media_index = index
    by_objects = add_table(objects_art, whole, "eval")
    by_arrays = add_table(arrays_art, streamed, "eval")
    assert open(by_arrays.local_path).read() == open(by_objects.local_path).read()
    media = [m.manifest.to_manifest_json() for m in (objects_art, arrays_art)]
    for manifest in media:  # the tables' files: same JSON, other key order (see _canonical)
        del manifest["contents"]["eval.table.json"]
    assert media[0] == media[1]
    ref = arrays_art.manifest.entries[files.entry_name(5)]
    assert ref.ref == index.reference_uri(files.entry_name(5)) and ref.digest == files.digest(5)
    for art in (objects_art, arrays_art):  # data-table media: references, no copy
        staged = stagers[art.name].files.prefix  # the version's own masks, written once
        copied = [
            name
            for name, entry in art.manifest.entries.items()
            if entry.local_path
            and not name.startswith("media/classes/")
            and not entry.local_path.startswith(staged)
        ]
        assert copied == ["eval.table.json"]
        assert mask_files.entry_name(6) in art.manifest.entries
        assert (
            sum(str(entry.local_path).startswith(staged) for entry in art.manifest.entries.values())
            == 8
        )
    row = json.loads(open(by_arrays.local_path).read())["data"][4]
    assert set(row[2]["masks"]) == {"ground_truth", "predictions"} and "boxes" in row[3]


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
