"""fastevalcb.tables.staging: media written straight into an artifact's staging are the entries
``add_file`` makes; entries kept as rows log as the entry objects they stand for."""

from __future__ import annotations

import json
import os
import types

import numpy as np
import PIL.Image
import pytest
import wandb

from fastevalcb.media import build_images
from fastevalcb.tables import IMAGE_DIR, IMAGE_SUFFIX, ColumnarTable
from fastevalcb.tables.references import MediaFiles
from fastevalcb.tables.staging import EntryRows, EntryView
from tests.helpers.tables import batch_cells, mixed_batches


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
    )  # reproducible: see tests.helpers.tables.batch_cells
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

    from fastevalcb.tables import MediaIndex, Stager, _wandb
    from fastevalcb.tables.staging import entry_rows

    rng = np.random.default_rng(1)
    data = wandb.Artifact("data", "dataset")
    stager = Stager(data)
    # PIL's bytes: ISA-L's are not always the same for the same pixels
    # (see tests.helpers.tables.batch_cells)
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
    for artifact in (data, pred):  # new_file's temp dirs: removed now, not by the collector
        _wandb.cleanup_tmp_dir(artifact)


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


def test_staged_media_decode_to_their_pixels_on_the_fast_encoder(wandb_env):
    """The default encoder (ISA-L when installed) on the pool, staged: every image and mask
    file in the artifact decodes to the pixels it was made from, batch after batch."""
    from fastevalcb.tables import Stager

    art = wandb.Artifact("b", "dataset")
    stager = Stager(art)
    for _ in range(20):
        for batch in mixed_batches():
            cells = batch_cells(batch, stager, compress_level=1)
            for image, pixels in zip(cells["image"] + cells["masks"], [*batch["image"]] * 2):
                np.testing.assert_array_equal(np.asarray(PIL.Image.open(image._path)), pixels)
            for image, mask in zip(cells["masks"], batch["masks"][1]):
                np.testing.assert_array_equal(
                    np.asarray(PIL.Image.open(image._masks["truth"]._path)), mask
                )
