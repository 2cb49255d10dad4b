"""The one-time checks of the wandb fast paths (:data:`_wandb.FAST_PATHS`).

Each check writes a tiny artifact twice, once through fastevalcb's fast path and once
through wandb's public API, and raises :class:`FastPathMismatch` naming the first
difference. :func:`_wandb.fast` runs a path's check the first time a process asks for the
path, and falls back to the public API for the whole process when it raises.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import wandb
from wandb.data_types import Classes

from fastevalcb.tables import _wandb
from fastevalcb.tables.columnar import ColumnarTable, JSONText, ScalarTable
from fastevalcb.tables.references import DataTableLink, MediaFiles, MediaIndex
from fastevalcb.tables.staging import Stager, add_json, entry_rows
from fastevalcb.tables.streamed import StreamedTable


class FastPathMismatch(AssertionError):
    """fastevalcb's fast path and wandb's public API wrote different records."""


def _same(what: str, ours: Any, wandbs: Any) -> None:
    if ours != wandbs:
        where, a, b = _difference(ours, wandbs)
        raise FastPathMismatch(
            f"{what} differs at {where or 'the top'}: fastevalcb wrote "
            f"{str(a)[:200]}, wandb wrote {str(b)[:200]}"
        )


def _difference(a: Any, b: Any, where: str = "") -> tuple[str, Any, Any]:
    """The first place two JSON-like values differ: ``(path, a's value, b's value)``."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key, _ABSENT) != b.get(key, _ABSENT):
                return _difference(a.get(key, _ABSENT), b.get(key, _ABSENT), f"{where}/{key}")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _difference(x, y, f"{where}/{i}")
    return where, a, b


_ABSENT = "<absent>"


def _png(seed: int, shape: tuple[int, ...] = (3, 4, 3)) -> bytes:
    import PIL.Image

    pixels = np.random.default_rng(seed).integers(0, 255, shape, dtype=np.uint8)
    out = io.BytesIO()
    PIL.Image.fromarray(pixels).save(out, format="png")
    return out.getvalue()


def _artifact(kind: str = "fastevalcb-check") -> wandb.Artifact:
    artifact = wandb.Artifact(f"fastevalcb-check-{os.urandom(4).hex()}", type=kind)
    _made.append(artifact)
    return artifact


_made: list[wandb.Artifact] = []  # the artifacts of the check running now


def _cleaned(check: Callable[[], None]) -> Callable[[], None]:
    """``check``, leaving no artifact of its own behind: each one's temp dir removed and its
    place in wandb's instance cache given up when it ends (left to the garbage collector,
    a temp dir is removed with a ``ResourceWarning`` whenever wandb's capped cache drops
    the artifact, in the middle of whatever runs then)."""

    @functools.wraps(check)
    def run() -> None:
        start = len(_made)
        try:
            check()
        finally:
            made, _made[start:] = _made[start:], []
            for artifact in made:
                _wandb.cleanup_tmp_dir(artifact)
                _wandb.uncache(artifact)

    return run


def _entry_json(entry: Any) -> dict[str, Any]:
    """An entry's JSON as wandb sends it, its local file named by its bytes' md5 (staging
    file names are random)."""
    out: dict[str, Any] = entry.to_json()
    if out.get("local_path"):
        with open(out["local_path"], "rb") as f:
            out["local_path"] = hashlib.md5(f.read(), usedforsecurity=False).hexdigest()
    return out


def _manifest(artifact: wandb.Artifact) -> dict[str, Any]:
    """The artifact's manifest JSON and every entry as wandb sends them."""
    out = artifact.manifest.to_manifest_json()
    out["entries"] = {name: _entry_json(entry) for name, entry in artifact.manifest.entries.items()}
    return out


# ---------------------------------------------------------------------------------
# "entries": staged files, JSON files and references as rows
# ---------------------------------------------------------------------------------
def check_entries() -> None:
    """Staged media files, an added class set and data-table references as rows make the
    entries, digests and manifest that ``add_file``, ``Artifact.add`` and
    ``add_reference`` make."""
    for ref in (None, "wandb-client-artifact://abc/media/images/x.png"):
        fast = _wandb.new_entry(
            "media/images/x.png",
            "1B2M2Y8AsgTpgAmY7PhCfg==",
            0 if ref else 3,
            local_path=None if ref else "/tmp/x",
            ref=ref,
        )
        slow = _wandb.validated_entry(
            "media/images/x.png",
            "1B2M2Y8AsgTpgAmY7PhCfg==",
            0 if ref else 3,
            local_path=None if ref else "/tmp/x",
            ref=ref,
        )
        _same("a manifest entry", fast.to_json(), slow.to_json())
        _same("a manifest entry", fast, slow)

    data, public = _artifact("dataset"), _artifact("dataset")
    stager = Stager(data)
    images = [
        stager.write(_png(seed), _wandb.IMAGE_DIR, _wandb.IMAGE_SUFFIX) for seed in (0, 1, 0)
    ]  # a duplicate: one entry
    masks = [stager.write(_png(2, (3, 4)), _wandb.MASK_DIR, _wandb.MASK_SUFFIX)]
    for file, (subdir, suffix) in zip(
        images + masks, [(_wandb.IMAGE_DIR, ".png")] * 3 + [(_wandb.MASK_DIR, ".mask.png")]
    ):
        name = stager.files.name_of_path(file.path) or ""  # "": not one of its files
        _same("a staged file's entry name", name.startswith(subdir) and name.endswith(suffix), True)
        if public.manifest.get_entry_by_path(name) is None:
            public.add_file(file.path, name=name, policy="immutable")
    classes = Classes([{"id": 0, "name": "a"}, {"id": 1, "name": "b"}])
    add_json(data, classes, "media/classes/check_cls")
    public.add(Classes([{"id": 0, "name": "a"}, {"id": 1, "name": "b"}]), "media/classes/check_cls")
    _same("the manifest", _manifest(data), _manifest(public))
    _same("the manifest digest", data.manifest.digest(), public.manifest.digest())
    _same(
        "a local file's entry name",
        data.get_added_local_path_name(images[1].path),
        public.get_added_local_path_name(images[1].path),
    )

    # References: rows of the data table's files, and add_reference of the same URIs.
    media = [_wandb.new_image(file, 4, 3) for file in images]
    files = MediaFiles.of(media, stager, _wandb.IMAGE_DIR, _wandb.IMAGE_SUFFIX)
    pred, pred_public = _artifact("evaluation"), _artifact("evaluation")
    index = MediaIndex.from_files(data, [files])
    names = index.add_column_references(pred, files, slice(0, len(files)))
    cache = _wandb.artifact_cache_by_client_id()
    cache[_wandb.client_id(data)] = data  # what add_reference resolves the digest from
    try:
        for name in names:
            if pred_public.manifest.get_entry_by_path(name) is None:
                pred_public.add_reference(index.reference_uri(name), name=name)
    finally:
        _wandb.uncache(data)
    _same("the reference manifest", _manifest(pred), _manifest(pred_public))
    _same("the reference digest", pred.manifest.digest(), pred_public.manifest.digest())
    for artifact in (data, pred):
        _same("entries as rows", isinstance(artifact.manifest.entries, dict), True)


# ---------------------------------------------------------------------------------
# "manifest": our manifests' bulk digest, and wandb's manifest file from rows
# ---------------------------------------------------------------------------------
def check_manifest() -> None:
    """A manifest of rows with the scoped subclass hashes to wandb's digest of the same
    entries as objects, wandb's manifest file of it has the same lines, and wandb still
    sends manifests past its threshold as that file."""
    _wandb.manifest_file_threshold()
    data = _artifact("dataset")
    stager = Stager(data)
    for seed in range(3):
        stager.write(_png(seed), _wandb.IMAGE_DIR, _wandb.IMAGE_SUFFIX)
    entries = entry_rows(data)
    objects = _artifact("dataset")
    objects.manifest.entries.update({name: entries[name] for name in entries})
    _wandb.scope_manifest(data, entries.digest_lines)
    _same("the manifest digest", data.manifest.digest(), objects.manifest.digest())
    _same(
        "the manifest class", type(objects.manifest).digest is not type(data.manifest).digest, True
    )
    texts = []
    for artifact in (data, objects):
        path = _wandb.write_manifest_file(artifact.manifest)
        try:
            with gzip.open(path, "rt", encoding="utf-8") as f:
                texts.append([json.loads(line) for line in f])
        finally:
            os.remove(path)
    _same("the manifest file", texts[0], texts[1])


# ---------------------------------------------------------------------------------
# "tables": table and media JSON
# ---------------------------------------------------------------------------------
def check_tables() -> None:
    """Tables written column by column (and streamed) are the JSON ``Artifact.add`` writes
    for a ``wandb.Table`` of the same rows, media objects built from files are the images
    wandb builds, with box and mask layers and a class set."""
    pixels = np.random.default_rng(3).integers(0, 255, (4, 5, 3), dtype=np.uint8)
    mask = np.random.default_rng(4).integers(0, 3, (4, 5), dtype=np.uint8)
    labels = {0: "bg", 1: "a", 2: "b"}
    boxes = [
        {
            "position": {"minX": 0.1, "maxX": 0.5, "minY": 0.2, "maxY": 0.6},
            "class_id": 1,
            "box_caption": "a",
            "scores": {"score": 0.5},
        }
    ]
    stock = wandb.Image(
        pixels,
        caption="c",
        boxes={"pred": {"box_data": boxes, "class_labels": labels}},
        masks={"gt": {"mask_data": mask, "class_labels": labels}},
    )
    b, m = _wandb.image_layers(stock)
    stock_file, mask_file = _wandb.media_file(stock), _wandb.media_file(m["gt"])
    if stock_file is None or mask_file is None:
        raise FastPathMismatch("wandb.Image from pixels: an image or mask without a file")
    ours = _wandb.new_image(
        stock_file,
        *_wandb.image_size(stock),
        boxes={
            "pred": _wandb.new_boxes2d(
                "pred", JSONText(json.dumps(boxes, sort_keys=True)), labels, None
            )
        },
        masks={"gt": _wandb.new_image_mask("gt", mask, labels, mask_file)},
        caption="c",
    )
    plain = wandb.Image(pixels[:2])
    rows = [
        [1, 0.5, "x", [0.1, 0.2], stock, plain],
        [2, float("nan"), "y", [0.2, 0.3], stock, plain],
    ]
    columns: list[str | int] = ["id", "score", "label", "scores", "image", "plain"]
    public, fast, streamed = _artifact(), _artifact(), _artifact()
    public.add(wandb.Table(columns=columns, data=rows), "t")
    from fastevalcb.tables.artifacts import add_table

    table = ColumnarTable(columns)
    table.add_columns(
        {
            name: [row[i] if name != "image" else ours for row in rows]
            for i, name in enumerate(columns)
        }
    )
    add_table(fast, table, "t")
    stream = StreamedTable(columns, streamed)
    stream.add_columns(
        {
            name: [row[i] if name != "image" else ours for row in rows]
            for i, name in enumerate(columns)
        }
    )
    add_table(streamed, stream, "t")
    expected = _table_json(public)
    _same("a table's JSON", _table_json(fast), expected)
    _same("a streamed table's JSON", _table_json(streamed), expected)
    _check_scalar_tables()
    for artifact in (fast, streamed):
        _same(
            "a table's media entries",
            sorted(n for n in artifact.manifest.entries if n.startswith("media/")),
            sorted(n for n in public.manifest.entries if n.startswith("media/")),
        )


def _check_scalar_tables() -> None:
    """A chart's table (:class:`ScalarTable`), typed and of mixed types, writes the JSON
    ``wandb.Table.to_json`` writes for the same rows."""
    rows = [["a", 1, 0.5, True, None], ["b", 2, float("nan"), False, "x"]]
    columns: list[str | int] = ["s", "i", "f", "b", "mixed"]
    artifact = _artifact()
    for types in ({"allow_mixed_types": True}, {"dtype": [str, int, float, bool, str]}):
        picked = rows if "allow_mixed_types" in types else [r[:4] + ["y"] for r in rows]
        ours = ScalarTable(columns=columns, data=picked, **types).to_json(artifact)
        stock = wandb.Table(columns=columns, data=picked, **types).to_json(artifact)
        _same(
            "a chart table's JSON",
            json.dumps(ours, sort_keys=True),
            json.dumps(stock, sort_keys=True),
        )


def _table_json(artifact: wandb.Artifact) -> Any:
    entry = artifact.manifest.entries["t.table.json"]
    if entry.local_path is None:
        raise FastPathMismatch("the table's entry has no local file")
    with open(entry.local_path, encoding="utf-8") as f:
        out = json.load(f)
    for row in out["data"]:  # NaN != NaN: compare them as text
        row[:] = [json.dumps(cell, sort_keys=True) for cell in row]
    return out


# ---------------------------------------------------------------------------------
# "links": a column of a logged data table's row indices
# ---------------------------------------------------------------------------------
def check_links() -> None:
    """A pred table whose column holds a logged data table's ``get_index()`` values records
    the ``foreignIndex`` column type and the reference entry to the data table's file that
    ``Artifact.add`` records while the data artifact is in wandb's instance cache (its
    ``add_reference`` of the table's ``wandb-client-artifact://`` URI)."""
    from fastevalcb.tables.artifacts import add_table

    columns: list[str | int] = ["id", "label"]
    rows: list[list[Any]] = [[0, "a"], [1, "b"], [2, "a"]]
    data, public, fast = _artifact("dataset"), _artifact("evaluation"), _artifact("evaluation")
    logged = wandb.Table(columns=columns, data=rows)
    data_entry = data.add(logged, "val_data")
    data.finalize()  # as logged: wandb links a finalized artifact's table by reference
    table = wandb.Table(columns=["epoch", "row"])
    for index in logged.get_index():  # type: ignore[no-untyped-call]
        table.add_data(0, index)
    public.add(table, "t")  # the data artifact is in wandb's instance cache: a reference
    linked = wandb.Table(columns=columns, data=rows)  # ours: never added anywhere
    link = DataTableLink(_wandb.client_id(data), data_entry.path, data_entry.digest)
    linked.link = link  # type: ignore[attr-defined]
    ours = ColumnarTable(["epoch", "row"])
    ours.add_columns({"epoch": [0, 0, 0], "row": linked.get_index()})  # type: ignore[no-untyped-call]
    add_table(fast, ours, "t")
    _same("a linked table's manifest", _linked_manifest(fast), _linked_manifest(public))
    _same("a linked table's JSON", _linked_table_json(fast), _linked_table_json(public))


_TABLE_TOKEN = re.compile(r"media/tables/t_[a-z0-9]+\.table\.json")


def _linked_manifest(artifact: wandb.Artifact) -> dict[str, Any]:
    """The manifest (:func:`_manifest`) with the random name of a linked table's entry
    (``media/tables/t_<random>``) made one, the table file set aside: its bytes differ (ours
    writes ``"data"`` first), what it holds is compared by :func:`_linked_table_json`."""
    out = _manifest(artifact)
    del out["contents"]  # the same entries, by name: in "entries"
    del out["entries"]["t.table.json"]
    same: dict[str, Any] = json.loads(
        _TABLE_TOKEN.sub("media/tables/t_<id>.table.json", json.dumps(out))
    )
    return same


def _linked_table_json(artifact: wandb.Artifact) -> dict[str, Any]:
    """The table's JSON (:func:`_table_json`), the linked table's random name made one."""
    out = _table_json(artifact)
    same: dict[str, Any] = json.loads(
        _TABLE_TOKEN.sub("media/tables/t_<id>.table.json", json.dumps(out))
    )
    return same


_wandb.register_check("entries", _cleaned(check_entries))
_wandb.register_check("manifest", _cleaned(check_manifest))
_wandb.register_check("tables", _cleaned(check_tables))
_wandb.register_check("links", _cleaned(check_links))
