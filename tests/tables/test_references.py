"""fastevalcb.tables.references: pred tables reference the data table's files
(``wandb-client-artifact://``) with the entries, table JSON and image JSON wandb's own
``add_reference`` / ``Artifact.add`` make."""

from __future__ import annotations

import json

import numpy as np
import pytest
import wandb
from wandb.sdk.artifacts.storage_handlers.wb_local_artifact_handler import WBLocalArtifactHandler
from wandb.sdk.data_types._dtypes import TypeRegistry

from fastevalcb.media import build_images
from fastevalcb.tables import IMAGE_DIR, IMAGE_SUFFIX, ColumnarTable
from fastevalcb.tables.references import CLIENT_REF_SCHEME, ImageColumn
from fastevalcb.types import PackedDetections

type_of = TypeRegistry.type_of


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


def _canonical(text: str) -> str:
    """A StreamedTable's JSON as json.dumps(..., sort_keys=True) writes it (it writes
    "data" first; the rest is the same text)."""
    return json.dumps(json.loads(text), sort_keys=True)


@pytest.mark.fast_path
def test_image_column_pred_rows_are_wandbs_references(wandb_env):
    """A pred batch's ImageColumn (arrays) gives the table text and reference entries that
    the same images as wandb.Image objects give through MediaIndex.add_references."""
    from fastevalcb.media import stage_masks
    from fastevalcb.media.boxes import box_data_json
    from fastevalcb.tables import (
        MASK_DIR,
        MASK_SUFFIX,
        LayeredImages,
        MediaFiles,
        MediaIndex,
        Stager,
        StreamedTable,
        add_table,
    )

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
        for col in (boxed, predicted):  # what the type check reads: the first image's type
            assert type_of(col.type_sample()[0]) == type_of(col[0])
        assert (
            predicted[1]._masks["predictions"]._sha256
            == cells["p1"]["predicted"][1]._masks["predictions"]._sha256
        )  # the same PNG in both artifacts
        whole.add_columns(
            {key: value if key == "n" else list(value) for key, value in cells["p1"].items()}
        )
        streamed.add_columns(cells["p2"])
    # A first image without boxes has no score keys: its one-box sample has none either.
    no_boxes_first = PackedDetections(
        np.array([0, 0, 3]), rng.uniform(0, 5, (3, 4)).cumsum(1), np.array([0, 1, 1]), rng.random(3)
    )
    boxes = box_data_json(no_boxes_first, labels, "pixel", 2)
    for first in (0, 1):
        sample = LayeredImages(
            ImageColumn(files, slice(0, 2 - first)), labels, boxes={"p": boxes[first:]}
        )
        expected = type_of(sample[0])
        assert type_of(sample.type_sample()[0]) == expected
        score_keys = expected.to_json()["params"]["box_score_keys"]["params"]["val"]
        assert list(score_keys) == (["score"] if first == 1 else [])
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
