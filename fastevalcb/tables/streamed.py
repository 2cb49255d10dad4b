""":class:`StreamedTable`: a table serialized into its artifact batch by batch."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import stat
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import wandb
from wandb.data_types import BoundingBoxes2D, Classes, Media

from fastevalcb.tables import _wandb
from fastevalcb.tables._wandb import b64_digest, file_hasher, image_file_json, release_pixels
from fastevalcb.tables.columnar import (
    _FRAGMENT_JSON,
    _SCALAR_SET,
    ColumnarTable,
    TableSchemaError,
    _column_to_json,
    _holds_nan,
    _image_signature,
    _uniform_representative,
    _value_key,
)
from fastevalcb.tables.references import (
    ImageColumn,
    LayeredImages,
    MediaFiles,
    MediaIndex,
    add_link_references,
)
from fastevalcb.tables.staging import add_json, local_entry_name


class StreamedTable(ColumnarTable):
    """A :class:`ColumnarTable` serialized into its artifact batch by batch, as rows arrive.

    Each :meth:`add_columns` call writes its rows' JSON text at once (media files added to
    or referenced from ``artifact``, box layers spliced, column types merged) to the
    table's file in wandb's staging directory, its digest updated as it goes: no row,
    media object, pixel array or row text outlives its batch in memory (a 10k-image
    detection version's box layers are ~100 MB of text), and the file is written once,
    never copied or read back. Its JSON is what :func:`add_table` writes for a
    :class:`ColumnarTable` with the same rows, with ``"data"`` first (the other keys,
    column types among them, are known only after the last row).

    A column of a logged data table's row indices (``data_table_ref.get_index()`` values)
    is recorded as wandb records it, a ``foreignIndex`` column naming the data table, here
    by a reference entry to it (:func:`~fastevalcb.tables.references.add_link_references`).

    Without the "tables" fast path (:func:`_wandb.fast`), the rows are kept as wandb
    values instead, and :func:`add_table` adds them as a ``wandb.Table`` (wandb writes its
    JSON): the version's rows are in memory until it is logged.

    Args:
        columns: the column names.
        artifact: the artifact the table will be added to (its media become entries, or
            references through ``media_index``, as each batch is serialized).
        media_index: the data artifact's media (pred tables): files it holds become
            reference entries of ``artifact``.
    """

    def __init__(
        self,
        columns: Sequence[str | int],
        artifact: wandb.Artifact,
        media_index: MediaIndex | None = None,
        allow_mixed_types: bool = False,
    ) -> None:
        super().__init__(columns, allow_mixed_types)
        self.artifact = artifact
        self.media_index = media_index
        self.nrows = 0
        self._file: Any = None  # the table's staged file, "data" written so far
        self._hasher = file_hasher(artifact)  # its digest so far
        self._cleanup: Any = None  # removes the file of a table dropped unwritten
        self._closed = self._finished = False
        self._known_kinds: dict[str | int, set[Any]] = {}  # per column: kinds already typed
        self._pinned: list[Any] = []  # one value per kind: what its key's ids point at
        # (Classes, its JSON): the batches share one
        self._last_classes: tuple[Classes | None, dict[str, Any]] = (None, {})
        self._class_files: dict[str, dict[str, Any]] = {}  # class-set digest -> its file's JSON
        # Without the "tables" fast path: rows are kept in .data, for wandb to serialize.
        self.keeps_rows = not _wandb.fast("tables")

    def add_data(self, *data: Any) -> None:
        self._check_row(data)
        self.add_columns({name: [value] for name, value in zip(self.columns, data)})

    def add_columns(self, columns: Mapping[Any, Any]) -> None:
        if self._closed:
            raise TableSchemaError("this StreamedTable is written: no rows can be added")
        values = self._checked_columns(columns)
        n = len(values[0])
        if not n:
            return
        artifact, index = self.artifact, self.media_index
        # Plain and layered image columns go from their arrays (by reference through
        # media_index, or files of this artifact); the rest as wandb values.
        by_ref = {
            i
            for i, col in enumerate(values)
            if isinstance(col, LayeredImages) or isinstance(col, ImageColumn) and col.plain
        }
        values = [col if i in by_ref else list(col) for i, col in enumerate(values)]
        media = [
            col
            for i, col in enumerate(values)  # lists of scores hold no media
            if i not in by_ref and any(issubclass(k, Media) for k in set(map(type, col)))
        ]
        if index is not None:
            index.add_references(artifact, itertools.chain.from_iterable(media))
        if self.keeps_rows:
            self._keep_rows(values, by_ref, n)
            return
        type_map = _wandb.column_type_map(self)
        for name, col in zip(self.columns, values):  # image columns: by their first image
            sample = col.type_sample() if isinstance(col, (ImageColumn, LayeredImages)) else col
            type_map[name] = self._infer_column_type(name, sample)
        fragments: list[str] = []
        # Image columns are written as text, the rest by json.dumps around a marker that
        # the texts then replace (str.split/join: C speed, no dict per cell).
        texts = [  # the by_ref columns: the others are lists now
            self._column_texts(col)
            for col in values
            if isinstance(col, (ImageColumn, LayeredImages))
        ]
        json_columns = [
            _CELL
            if i in by_ref
            else _column_to_json(col, artifact, index, fragments, self._image_json)
            for i, col in enumerate(values)
        ]
        text = json.dumps(
            [
                list(row)
                for row in zip(
                    *[itertools.repeat(col, n) if col is _CELL else col for col in json_columns]
                )
            ],
            sort_keys=True,
        )
        text = _fill_cells(text, texts, n)
        if fragments:
            text = _FRAGMENT_JSON.sub(lambda m: fragments[int(m.group(1))], text)
        self._write((", " if self.nrows else "") + text[1:-1])
        self.nrows += n
        for cell in itertools.chain.from_iterable(media):
            release_pixels(cell)

    def _keep_rows(self, values: list[Any], by_ref: set[int], n: int) -> None:
        """Keep a batch's rows in :attr:`data`, their data-table files first made entries
        of this table's artifact (references or copies), where wandb will find them."""
        for i in by_ref:
            column = values[i]
            base = column if isinstance(column, ImageColumn) else column.base
            self._entry_names(base.files, base.rows)
            if base.masks is not None:
                self._entry_names(base.masks, base.rows)
            values[i] = list(column)
        self.data.extend(map(list, zip(*values)))
        self.nrows += n

    def _infer_column_type(self, name: str | int, column: Sequence[Any]) -> Any:
        """The column's type so far, merged with this batch's (cached per kind of value:
        a batch whose values are all of a kind already merged costs no wandb type work).

        The kinds: JSON scalars by their Python types and whether a float is NaN; uniform
        lists of scalars; images of one layer and class-map signature.
        """
        known = self._known_kinds.setdefault(name, set())
        key = _scalars_key(column)
        if key is None:
            uniform = _uniform_representative(column)
            if uniform is not None:  # all values have its type: one representative is enough
                key, column = _value_key(uniform[0]), uniform
            elif column and all(isinstance(v, wandb.Image) for v in column):
                signatures = set(map(_image_signature, column))  # one type: one signature
                if len(signatures) == 1:
                    key, column = ("image", signatures.pop()), column[:1]
        if key is not None and key in known:
            return _wandb.column_type_map(self)[name]
        merged = super()._infer_column_type(name, column)
        if key is not None:
            known.add(key)
            self._pinned.append(column[0])  # keeps the ids in its signature from reuse
        return merged

    def _image_json(self, image: wandb.Image) -> dict[str, Any]:
        """``image.to_json(artifact)`` once its files are entries of the artifact (staged by
        a :class:`Stager`, or references), without wandb's per-image work: the class set
        is added once per ``Classes`` object, file entries are looked up, not re-added."""
        artifact = self.artifact
        boxes, masks = _wandb.image_layers(image)
        classes = _wandb.image_classes(image)
        files = [image, *masks.values()]
        paths = [_wandb.media_path(m) for m in files]
        found = [None if p is None else local_entry_name(artifact, p) for p in paths]
        names = [name for name in found if name is not None]
        mask_files = [_wandb.media_file(m) for m in masks.values()]
        if (
            _wandb.image_grouping(image)
            or len(names) < len(files)
            or ((boxes or masks) and classes is None)
            or any(not isinstance(b, BoundingBoxes2D) for b in boxes.values())
            or None in mask_files
        ):
            stock: dict[str, Any] = _wandb.json_helper(image, artifact)  # a file to add
            return stock
        out = image_file_json(image, names[0])
        if classes is not None:
            out["classes"] = self._classes_json(classes)
        if boxes:
            out["boxes"] = {key: _wandb.box_layer(box)[0] for key, box in boxes.items()}
        if masks:
            out["masks"] = {
                key: {
                    "path": name,
                    "sha256": file.sha256,
                    "_type": _wandb.MASK_TYPE,
                }
                for key, file, name in zip(masks, mask_files, names[1:])
                if file is not None
            }
        return out

    def _classes_json(self, classes: Classes) -> dict[str, Any]:
        """What ``Image.to_json`` writes for its class set, adding each set to the artifact
        once: the images of a batch share one ``Classes``, and batches with an equal set
        share its file."""
        if self._last_classes[0] is classes:
            return self._last_classes[1]
        digest = hashlib.md5(
            str(_wandb.class_set(classes)).encode("utf-8"), usedforsecurity=False
        ).hexdigest()
        out = self._class_files.get(digest)
        if out is None:
            entry = add_json(
                self.artifact, classes, os.path.join("media", "classes", digest + "_cls")
            )
            out = {"type": "classes-file", "path": entry.path, "digest": entry.digest}
            self._class_files[digest] = out
        self._last_classes = (classes, out)
        return out

    def _column_texts(self, column: ImageColumn | LayeredImages) -> list[str]:
        """The JSON text of each image of a plain or layered image column, its files made
        entries of this table's artifact."""
        if isinstance(column, ImageColumn):
            return column.json_texts(self._entry_names(column.files, column.rows))
        base = column.base
        mask_names = {
            key: [self._staged_name(file[0]) for file in files]
            for key, files in column.masks.items()
        }
        if base.masks is not None:
            mask_names["ground_truth"] = self._entry_names(base.masks, base.rows)
        classes = column.classes
        if classes is None:
            raise ValueError("a LayeredImages column has no class set (empty class_labels?)")
        return column.json_texts(
            self._entry_names(base.files, base.rows), mask_names, self._classes_json(classes)
        )

    def _entry_names(self, files: MediaFiles, rows: slice) -> list[str]:
        """The artifact's entry names of rows of a data table's files."""
        if self.media_index is not None:
            return self.media_index.add_column_references(self.artifact, files, rows)
        names = files.entry_names(rows)
        missing = [name for name in names[:1] if name not in self.artifact.manifest.entries]
        if missing:
            raise ValueError(
                f"{missing[0]} is not a file of this table's artifact (and the "
                "table has no media_index to reference it by)"
            )
        return names

    def _staged_name(self, path: str) -> str:
        name = local_entry_name(self.artifact, path)
        if name is None:
            raise ValueError(
                f"{path} is not a file of this table's artifact (stage a "
                "LayeredImages column's masks with the table's Stager)"
            )
        return name

    def add_column(self, name: str, data: Any, optional: bool = False) -> None:
        raise TableSchemaError(
            f"a StreamedTable's columns are fixed ({self.columns}): cannot add {name!r}"
        )

    def to_json(self, run_or_artifact: Any) -> dict[str, Any]:
        if run_or_artifact is not self.artifact:
            raise TypeError("a StreamedTable is serialized into its own artifact only")
        table_json: dict[str, Any] = json.loads(self.json_text())
        return table_json

    def json_text(self) -> str:
        """The table's JSON: as :meth:`finish` writes it (or wrote it)."""
        if self._closed and not self._finished:
            raise TableSchemaError("this StreamedTable was closed unwritten: it has no JSON")
        self._open()
        if not self._finished:
            self._file.flush()
        with open(self._file.name, "rb") as f:
            text = f.read().decode("utf-8")
        return text if self._finished else text + self._tail()

    def finish(self) -> tuple[str, str]:
        """Write the rest of the table's JSON and close its file.

        Returns:
            ``(path, digest)``: the staged file, read-only, and its entry digest.
        """
        if self._closed:
            raise TableSchemaError("this StreamedTable is already written")
        self._write(self._tail())
        self._file.close()
        self._cleanup.detach()
        os.chmod(self._file.name, stat.S_IRUSR)  # as add_file leaves its staging copies
        self._closed = self._finished = True
        return self._file.name, b64_digest(self._hasher)

    def _tail(self) -> str:
        """What follows the rows: ``], <the other keys>}``, as ``json.dumps`` sorts them.

        A column of a logged data table's row indices (``get_index()`` values) names the
        data table by a reference entry (:func:`add_link_references`); without the "links"
        fast path, wandb adds the data table itself, a copy.
        """
        type_map = _wandb.column_type_map(self)
        if _wandb.fast("links"):
            add_link_references(self.artifact, type_map)
        head = {
            "_type": _wandb.TABLE_TYPE,
            "columns": self.columns,
            "ncols": len(self.columns),
            "nrows": self.nrows,
            "column_types": _wandb.column_types_json(type_map, self.artifact),
            "log_mode": self.log_mode,
        }
        return "], " + json.dumps(head, sort_keys=True)[1:]

    def _open(self) -> None:
        if self._file is None:
            path = os.path.join(
                _wandb.staging_dir(), f"fastevalcb-{os.urandom(6).hex()}.table.json"
            )
            self._file = open(path, "xb")  # noqa: SIM115 - closed by finish() or close()
            self._cleanup = weakref.finalize(self, _remove, self._file)
            self._write('{"data": [')

    def _write(self, text: str) -> None:
        self._open()
        data = text.encode("utf-8")
        self._file.write(data)
        self._hasher.update(data)

    def close(self) -> None:
        """Delete the file of a table that will not be written (a dropped version)."""
        if not self._closed and self._cleanup is not None:
            self._cleanup()
        self._closed = True


def _scalars_key(column: Sequence[Any]) -> tuple[Any, ...] | None:
    """What the wandb type of a batch of JSON scalars depends on: their Python types, and
    whether a float among them is NaN (None: not all scalars)."""
    kinds = frozenset(map(type, column))
    if not kinds or not _SCALAR_SET.issuperset(kinds):
        return None
    nan = (
        float in kinds
        and _holds_nan(column, kinds)  # one sum; also true for inf beside -inf, hence:
        and any(type(v) is float and v != v for v in column)
    )
    return ("scalars", kinds, nan)


def _remove(f: Any) -> None:
    """Close and delete a table file; a close that re-flushes what a full disk refused
    fails, and the file must still go (on a full disk it is the space a retry needs)."""
    with contextlib.suppress(OSError):
        f.close()
    with contextlib.suppress(OSError):
        os.remove(f.name)


_CELL = "\x00fastevalcb-cell\x00"  # where a pre-written cell's text goes
_CELL_JSON = json.dumps(_CELL)


def _fill_cells(text: str, columns: list[list[str]], n: int) -> str:
    """Put the cells' texts in place of the ``_CELL`` markers of ``n`` rows of ``text``
    (row-major: each row's markers in column order)."""
    if not columns:
        return text
    pieces = text.split(_CELL_JSON)
    cells = [cell for row in zip(*columns) for cell in row]
    if len(pieces) != len(cells) + 1:  # a value that is the marker itself: not ours to write
        raise ValueError("a table value equals fastevalcb's internal cell marker")
    out = [""] * (2 * len(cells) + 1)
    out[::2], out[1::2] = pieces, cells
    return "".join(out)


def num_rows(table: wandb.Table) -> int:
    """Rows in ``table`` (a :class:`StreamedTable` keeps none as Python rows)."""
    return table.nrows if isinstance(table, StreamedTable) else len(table.data)
