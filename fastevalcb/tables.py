"""Tables, artifacts and media references: the one module that talks to wandb.

Everything here that touches a private wandb attribute is marked ``# wandb-internal``
and covered by ``tests/test_tables.py``, which fails loudly when a wandb release
changes it (the supported wandb range in ``pyproject.toml`` is what those tests cover).

How references work, online and offline alike:

* The data table is added to a ``wandb.Artifact``; wandb stages every media file and
  remembers, per artifact, which local file became which entry
  (``Artifact.get_added_local_path_name``).
* A pred-table artifact never copies those files. For every media cell whose file is
  already an entry of the data artifact, the pred artifact gets a *reference* entry
  with the same name whose ``ref`` is ``wandb-client-artifact://<data client id>/<name>``
  (what ``wandb.sdk.artifacts.storage_handlers.wb_local_artifact_handler`` produces).
  wandb-core's ``ArtifactSaver.resolveClientIDReferences`` turns those into
  ``wandb-artifact://<server id>/<name>`` when the version is uploaded, live or by
  ``wandb sync`` of an offline run.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import itertools
import json
import math
import os
import re
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import wandb
from wandb.sdk.data_types import _dtypes
from wandb.sdk.data_types.base_types.media import Media
from wandb.sdk.data_types.base_types.wb_value import WBValue
from wandb.sdk.artifacts.artifact_manifest_entry import ArtifactManifestEntry
from wandb.sdk.artifacts.staging import get_staging_dir
from wandb.sdk.lib.paths import LogicalPath
from wandb.sdk.data_types.utils import _json_helper
from wandb.sdk.data_types._private import MEDIA_TMP
from wandb.sdk.data_types.helper_types.bounding_boxes_2d import BoundingBoxes2D
from wandb.sdk.data_types.helper_types.classes import Classes
from wandb.sdk.data_types.helper_types.image_mask import ImageMask
from wandb.sdk.lib import json_util
from wandb.util import JSONEncoderUncompressed

CLIENT_REF_SCHEME = "wandb-client-artifact"

_JSON_SCALARS = (str, int, float, bool, type(None))


class TableSchemaError(ValueError):
    """A row or a column set does not match the table's declared columns."""


class JSONText(list):
    """A JSON array kept as its text (what ``json.dumps(value, sort_keys=True)`` writes).

    Used as a box layer's ``box_data``: building 100 box dicts per image and encoding them
    again in the table costs ~1 ms an image; the text is built once, straight from the
    arrays, and :func:`add_table` splices it into the table's JSON. Anything else that
    reads it as a list (wandb's type inference) gets the decoded elements.

    Attributes:
        text: the JSON array text.
        score_keys: the keys of the elements' ``"scores"`` dicts (for type inference).
    """

    def __init__(self, text: str, score_keys: frozenset[str] = frozenset()) -> None:
        super().__init__()  # the list's own storage stays empty: see decoded()
        self.text = text
        self.score_keys = score_keys

    def decoded(self) -> list[Any]:
        return json.loads(self.text)

    def __iter__(self):
        return iter(self.decoded())

    def __len__(self) -> int:
        return len(self.decoded())

    def __getitem__(self, index):
        return self.decoded()[index]

    def __bool__(self) -> bool:
        return self.text != "[]"

    def __eq__(self, other: object) -> bool:
        return self.decoded() == (other.decoded() if isinstance(other, JSONText) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"JSONText({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


_FRAGMENT = "\x00fastevalcb-json:{}\x00"
_FRAGMENT_JSON = re.compile(r'"\\u0000fastevalcb-json:(\d+)\\u0000"')


def validate_columns(columns: Any, what: str) -> list[str]:
    """Check a declared column list: a non-empty list of unique, non-blank str/int names."""
    if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence):
        raise TableSchemaError(
            f"{what} must be a list of column names, got {type(columns).__name__}: {columns!r}"
        )
    columns = list(columns)
    if not columns:
        raise TableSchemaError(f"{what} must name at least one column, got []")
    bad = [c for c in columns if type(c) not in (str, int)]
    if bad:
        raise TableSchemaError(f"{what} names must be str or int, got {bad!r}")
    blank = [i for i, c in enumerate(columns) if type(c) is str and not c.strip()]
    if blank:
        raise TableSchemaError(
            f"{what} names must be non-empty, got {columns[blank[0]]!r} at position "
            f"{blank[0]} of {columns}")
    dupes = sorted({str(c) for c in columns if columns.count(c) > 1})
    if dupes:
        raise TableSchemaError(f"{what} has duplicate column names: {dupes}")
    return columns


class ColumnarTable(wandb.Table):
    """A ``wandb.Table`` that is filled cheaply and serialized column by column.

    ``wandb.Table.add_data`` re-infers and merges the type of every column for every
    row; this table only checks the row length, and infers each column's wandb type
    once at serialization, from one representative per Python type (every cell for
    media columns, whose types carry class maps). It is a real ``wandb.Table``:
    it can be added to an artifact or passed to ``wandb.log``.

    Fill it row by row (``add_data``, stock-compatible) or from whole columns
    (``add_columns``), e.g. numpy arrays straight from a model.
    """

    def __init__(self, columns: Sequence[str], allow_mixed_types: bool = False) -> None:
        columns = validate_columns(columns, "columns")
        super().__init__(columns=columns, allow_mixed_types=allow_mixed_types)
        self._allow_mixed = allow_mixed_types
        self.media_index: MediaIndex | None = None  # set when its images are references

    # -- filling ------------------------------------------------------------------
    def add_data(self, *data: Any) -> None:
        """Append one row; its values must match the declared columns in order."""
        if len(data) != len(self.columns):
            raise TableSchemaError(
                f"add_data got {len(data)} values, expected {len(self.columns)} "
                f"for columns {self.columns}"
            )
        self.data.append(list(data))

    def add_columns(self, columns: Mapping[str, Any]) -> None:
        """Append rows given as whole columns: ``{name: array or list}``.

        Every declared column must be present, each with the same length. numpy
        arrays are converted once per column (``tolist``), not cell by cell.
        """
        self.data.extend(map(list, zip(*self._checked_columns(columns))))

    def _checked_columns(self, columns: Mapping[str, Any]) -> list[list[Any]]:
        """The declared columns of ``columns`` as lists, in order (same lengths, none missing)."""
        given, declared = list(columns), list(self.columns)
        if set(given) != set(declared):
            missing = [c for c in declared if c not in columns]
            extra = [c for c in given if c not in declared]
            raise TableSchemaError(
                f"add_columns expected columns {declared}, got {given} "
                f"(missing {missing}, unexpected {extra})"
            )
        lengths = {name: len(columns[name]) for name in declared}
        if len(set(lengths.values())) > 1:
            raise TableSchemaError(f"add_columns got columns of different lengths: {lengths}")
        return [_column_to_list(columns[name]) for name in declared]

    def add_column(self, name: str, data: Any, optional: bool = False) -> None:
        """Add a new column to the existing rows (stock-compatible signature)."""
        if name in self.columns:
            raise TableSchemaError(f"column {name!r} already exists in {self.columns}")
        values = _column_to_list(data)
        if self.data and len(values) != len(self.data):
            raise TableSchemaError(
                f"column {name!r} has {len(values)} values, the table has {len(self.data)} rows"
            )
        self.columns.append(name)
        if not self.data:
            self.data.extend([v] for v in values)
        else:
            for row, value in zip(self.data, values):
                row.append(value)

    # -- serialization ------------------------------------------------------------
    def to_json(self, run_or_artifact: Any, fragments: list[str] | None = None) -> dict[str, Any]:
        """The table's JSON for an artifact.

        ``fragments``: when given (by :func:`add_table`), :class:`JSONText` values become
        placeholders indexing into it, to be spliced into the dumped text; otherwise they
        are decoded into plain lists.
        """
        if not isinstance(run_or_artifact, wandb.Artifact):
            return super().to_json(run_or_artifact)
        artifact = run_or_artifact
        ncols = len(self.columns)
        by_column = list(zip(*self.data)) if self.data else [() for _ in range(ncols)]
        json_columns = [_column_to_json(col, artifact, self.media_index, fragments)
                        for col in by_column]
        type_map = {
            name: self._infer_column_type(name, col)
            for name, col in zip(self.columns, by_column)
        }
        return {
            "_type": wandb.Table._log_type,
            "columns": self.columns,
            "data": [list(row) for row in zip(*json_columns)] if self.data else [],
            "ncols": ncols,
            "nrows": len(self.data),
            "column_types": _dtypes.TypedDictType(type_map).to_json(artifact),
            "log_mode": self.log_mode,
        }

    def _infer_column_type(self, name: str, column: Sequence[Any]) -> _dtypes.Type:
        col_type = self._column_types.params["type_map"][name]
        for value in _type_representatives(column):
            merged = col_type.assign(value)
            if isinstance(merged, _dtypes.InvalidType):
                if not self._allow_mixed:
                    raise TypeError(
                        f"column {name!r} mixes incompatible types: {col_type} and "
                        f"{type(value).__name__} ({value!r:.80}); pass allow_mixed_types=True"
                    )
                merged = _dtypes.UnionType([col_type, _dtypes.TypeRegistry.type_of(value)])
            col_type = merged
        return col_type


class StreamedTable(ColumnarTable):
    """A :class:`ColumnarTable` serialized into its artifact batch by batch, as rows arrive.

    Each :meth:`add_columns` call writes its rows' JSON text at once (media files added to
    or referenced from ``artifact``, box layers spliced, column types merged) to a
    temporary file: no row, media object, pixel array or row text outlives its batch in
    memory (a 10k-image detection version's box layers are ~100 MB of text). Its JSON is
    the text :func:`add_table` writes for a :class:`ColumnarTable` with the same rows.

    Args:
        columns: the column names.
        artifact: the artifact the table will be added to (its media become entries, or
            references through ``media_index``, as each batch is serialized).
        media_index: the data artifact's media (pred tables): files it holds become
            reference entries of ``artifact``.
    """

    def __init__(self, columns: Sequence[str], artifact: wandb.Artifact,
                 media_index: MediaIndex | None = None, allow_mixed_types: bool = False) -> None:
        super().__init__(columns, allow_mixed_types)
        self.artifact = artifact
        self.media_index = media_index
        self.nrows = 0
        self._rows: Any = None  # the rows' JSON text so far (a temporary file)
        self._closed = False
        self._known_kinds: dict[str, set] = {}  # per column: kinds of value already typed
        self._pinned: list[Any] = []  # one value per kind: what its key's ids point at
        self._classes: dict[int, tuple] = {}  # id(Classes) -> (it, its JSON) in artifact

    def add_data(self, *data: Any) -> None:
        if len(data) != len(self.columns):
            raise TableSchemaError(
                f"add_data got {len(data)} values, expected {len(self.columns)} "
                f"for columns {self.columns}"
            )
        self.add_columns({name: [value] for name, value in zip(self.columns, data)})

    def add_columns(self, columns: Mapping[str, Any]) -> None:
        if self._closed:
            raise TableSchemaError("this StreamedTable is written and closed: no rows can be added")
        values = self._checked_columns(columns)
        n = len(values[0])
        if not n:
            return
        artifact, index = self.artifact, self.media_index
        # Plain image columns go from their arrays (by reference through media_index, or
        # files of this artifact); the rest as wandb values.
        by_ref = {i for i, col in enumerate(values)
                  if isinstance(col, ImageColumn) and col.plain}
        values = [col if i in by_ref else list(col) for i, col in enumerate(values)]
        media = [col for i, col in enumerate(values)
                 if i not in by_ref and not _SCALAR_SET.issuperset(map(type, col))]
        if index is not None:
            index.add_references(artifact, itertools.chain.from_iterable(media))
        type_map = self._column_types.params["type_map"]
        for i, (name, col) in enumerate(zip(self.columns, values)):
            type_map[name] = self._infer_column_type(name, col[:1] if i in by_ref else col)
        fragments: list[str] = []
        with _gc_paused():
            # Plain images are written as text, the rest by json.dumps around a marker that
            # the texts then replace (str.split/join: C speed, no dict per cell).
            texts = [col.json_texts(self._entry_names(col))
                     for i, col in enumerate(values) if i in by_ref]
            json_columns = [_CELL if i in by_ref
                            else _column_to_json(col, artifact, index, fragments,
                                                 self._image_json)
                            for i, col in enumerate(values)]
            text = json.dumps([list(row) for row in zip(*[
                itertools.repeat(col, n) if col is _CELL else col for col in json_columns])],
                sort_keys=True)
            text = _fill_cells(text, texts, n)
        if fragments:
            text = _FRAGMENT_JSON.sub(lambda m: fragments[int(m.group(1))], text)
        if self._rows is None:
            self._rows = tempfile.TemporaryFile("w+", encoding="utf-8")
        else:
            self._rows.write(", ")
        self._rows.write(text[1:-1])
        self.nrows += n
        for cell in itertools.chain.from_iterable(media):
            release_pixels(cell)

    def _infer_column_type(self, name: str, column: Sequence[Any]) -> _dtypes.Type:
        """The column's type so far, merged with this batch's (cached per kind of value:
        a batch whose values are all of a kind already merged costs no wandb type work)."""
        uniform = _uniform_representative(column)
        key = None if uniform is None else _value_key(uniform[0])
        if key is None and column and all(isinstance(v, wandb.Image) for v in column):
            signatures = set(map(_image_signature, column))  # all one type when one signature
            if len(signatures) == 1:
                key, column = ("image", signatures.pop()), column[:1]
        known = self._known_kinds.setdefault(name, set())
        if key is not None and key in known:
            return self._column_types.params["type_map"][name]
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
        local = artifact._added_local_paths  # wandb-internal
        files = [image, *(image._masks or {}).values()]  # wandb-internal (_masks, _boxes)
        if (image._grouping or any(local.get(m._path) is None for m in files)
                or ((image._boxes or image._masks) and image._classes is None)
                or any(not isinstance(b, BoundingBoxes2D) for b in (image._boxes or {}).values())):
            return _json_helper(image, artifact)  # a file wandb still has to add
        out = {"path": local[image._path].path, "sha256": image._sha256, "_type": "image-file",
               "format": image.format, "width": image._width, "height": image._height}
        if image._caption is not None:
            out["caption"] = image._caption
        if image._classes is not None:
            out["classes"] = self._classes_json(image._classes)
        if image._boxes:
            out["boxes"] = {key: box._val for key, box in image._boxes.items()}
        if image._masks:
            out["masks"] = {key: {"path": local[m._path].path, "sha256": m._sha256,
                                  "_type": ImageMask._log_type}
                            for key, m in image._masks.items()}
        return out

    def _classes_json(self, classes: Classes) -> dict[str, Any]:
        """What ``Image.to_json`` writes for its class set, adding it to the artifact once."""
        cached = self._classes.get(id(classes))
        if cached is None or cached[0] is not classes:
            digest = hashlib.md5(str(classes._class_set).encode("utf-8"),
                                 usedforsecurity=False).hexdigest()
            entry = self.artifact.add(classes, os.path.join("media", "classes", digest + "_cls"))
            cached = (classes, {"type": "classes-file", "path": entry.path,
                                "digest": entry.digest})
            self._classes[id(classes)] = cached
        return cached[1]

    def _entry_names(self, column: ImageColumn) -> list[str]:
        """The artifact's entry names of a plain image column's files."""
        if self.media_index is not None:
            return self.media_index.add_column_references(self.artifact, column)
        names = column.entry_names()
        missing = [name for name in names[:1] if name not in self.artifact.manifest.entries]
        if missing:
            raise ValueError(f"{missing[0]} is not a file of this table's artifact (and the "
                             "table has no media_index to reference it by)")
        return names

    def add_column(self, name: str, data: Any, optional: bool = False) -> None:
        raise TableSchemaError(f"a StreamedTable's columns are fixed ({self.columns}): "
                               f"cannot add {name!r}")

    def to_json(self, run_or_artifact: Any, fragments: list[str] | None = None) -> dict[str, Any]:
        if run_or_artifact is not self.artifact:
            raise TypeError("a StreamedTable is serialized into its own artifact only")
        return json.loads(self.json_text())

    def json_text(self) -> str:
        """The table's JSON, as ``json.dumps(table.to_json(artifact), sort_keys=True)``."""
        return "".join(self._json_parts())

    def write_json(self, f: Any) -> None:
        """Write :meth:`json_text` to the text file ``f`` piece by piece (no whole copy)."""
        for part in self._json_parts():
            f.write(part)

    def _json_parts(self) -> Iterator[str]:
        head = {
            "_type": wandb.Table._log_type,
            "columns": self.columns,
            "data": _ROWS,
            "ncols": len(self.columns),
            "nrows": self.nrows,
            "column_types": _dtypes.TypedDictType(
                self._column_types.params["type_map"]).to_json(self.artifact),
            "log_mode": self.log_mode,
        }
        before, after = json.dumps(head, sort_keys=True).split(_ROWS_JSON)
        yield before + "["
        if self._rows is not None:
            self._rows.seek(0)
            while block := self._rows.read(1 << 20):
                yield block
            self._rows.seek(0, os.SEEK_END)
        yield "]" + after

    def close(self) -> None:
        """Delete the rows' text (after the table's JSON is written)."""
        if self._rows is not None:
            self._rows.close()
        self._rows, self._closed = None, True


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
    out = [None] * (2 * len(cells) + 1)
    out[::2], out[1::2] = pieces, cells
    return "".join(out)


_ROWS = "\x00fastevalcb-rows\x00"
_ROWS_JSON = json.dumps(_ROWS)


def num_rows(table: wandb.Table) -> int:
    """Rows in ``table`` (a :class:`StreamedTable` keeps none as Python rows)."""
    return table.nrows if isinstance(table, StreamedTable) else len(table.data)


def _column_to_list(data: Any) -> Any:
    if isinstance(data, ImageColumn):
        return data  # a StreamedTable reads its arrays; others iterate it
    if isinstance(data, np.ndarray):
        if data.ndim == 0:
            raise TableSchemaError(f"a column must be 1-D or more, got a 0-d array {data!r}")
        return data.tolist() if data.dtype != object else list(data)
    if hasattr(data, "numpy"):  # tf.Tensor
        return _column_to_list(np.asarray(data))
    return list(data)


_SCALAR_SET = frozenset(_JSON_SCALARS)


def _is_scalar_list(value: Any) -> bool:
    return type(value) in (list, tuple) and _SCALAR_SET.issuperset(map(type, value))


def _scalar_list_key(value: Any) -> tuple | None:
    """What a list of JSON scalars' wandb type depends on (None: not such a list)."""
    if type(value) not in (list, tuple):
        return None
    types = tuple(map(type, value))
    if not _SCALAR_SET.issuperset(types):
        return None
    if float not in types:
        nan = False
    elif all(t is float for t in types):
        total = sum(value)  # NaN if any element is (or inf - inf: one extra representative)
        nan = total != total
    else:
        nan = any(type(v) is float and math.isnan(v) for v in value)
    return (type(value), len(value), types, nan)


def _column_to_json(
    column: Sequence[Any],
    artifact: wandb.Artifact,
    media_index: MediaIndex | None = None,
    fragments: list[str] | None = None,
    image_json: Callable[[wandb.Image], dict] | None = None,
) -> list[Any]:
    """JSON-ready values of one column.

    Scalar columns and lists of scalars pass through untouched. Plain images that are
    data-artifact references serialize to the same JSON in every pred version, so
    ``media_index`` caches it. ``image_json``: serializes the other images (wandb's
    ``to_json`` otherwise). Box layers kept as :class:`JSONText` become placeholders
    into ``fragments`` (or plain lists without it).
    """
    kinds = set(map(type, column))
    if _SCALAR_SET.issuperset(kinds):
        return list(column)
    if kinds == {list} and _SCALAR_SET.issuperset(map(type, itertools.chain.from_iterable(column))):
        return list(column)  # lists of scalars are JSON as they are
    out = []
    for v in column:
        if type(v) in _JSON_SCALARS:
            out.append(v)
        elif _is_scalar_list(v):
            out.append(list(v))
        elif media_index is not None and _is_plain_image(v):
            out.append(media_index.image_json(v, artifact))
        else:
            value = (image_json(v) if image_json is not None and isinstance(v, wandb.Image)
                     else _json_helper(v, artifact))
            if isinstance(v, wandb.Image) and isinstance(value, dict) and value.get("boxes"):
                value["boxes"] = {key: _fragment(layer, fragments)
                                  for key, layer in value["boxes"].items()}
            out.append(value)
    return out


def _fragment(value: Any, fragments: list[str] | None) -> Any:
    if not isinstance(value, JSONText):
        return value
    if fragments is None:
        return value.decoded()
    fragments.append(value.text)
    return _FRAGMENT.format(len(fragments) - 1)


def _is_plain_image(value: Any) -> bool:
    """A ``wandb.Image`` without boxes, masks or class map (all such share one type)."""
    return isinstance(value, wandb.Image) and not (
        value._boxes or value._masks or value._classes  # wandb-internal
    )


def _score_keys(box_data: Any) -> frozenset[str]:
    if isinstance(box_data, JSONText):
        return box_data.score_keys
    return frozenset(k for box in box_data for k in box.get("scores", ()))


def _image_signature(image: wandb.Image) -> tuple:
    """What an image's wandb type depends on: layer names, class maps and score keys."""
    boxes = image._boxes or {}  # wandb-internal
    masks = image._masks or {}
    classes = image._classes
    return (
        "image",
        None if classes is None else tuple((c.get("id"), c.get("name")) for c in classes._class_set),
        tuple(sorted((key, id(b._class_labels), _score_keys(b._val))
                     for key, b in boxes.items())),
        tuple(sorted((key, id(m._val.get("class_labels"))) for key, m in masks.items())),
    )


def _uniform_representative(column: Sequence[Any]) -> tuple[Any] | None:
    """``(column[0],)`` when every value has its wandb type (one type of non-NaN scalar,
    or lists of one length and one such element type), checked at C speed; else None."""
    if not column:
        return None
    kinds = set(map(type, column))
    if len(kinds) != 1:
        return None
    kind = kinds.pop()
    if kind in _SCALAR_SET:
        values = column
    elif kind is list and len(set(map(len, column))) == 1:
        values = list(itertools.chain.from_iterable(column))
        if len(set(map(type, values))) != 1 or type(values[0]) not in _SCALAR_SET:
            return None if values else (column[0],)
    else:
        return None
    if values and type(values[0]) is float:
        total = sum(values)
        if total != total:  # a NaN (or inf - inf): the general path finds them
            return None
    return (column[0],)


def _value_key(value: Any) -> Any:
    """What the wandb type of a uniform column's values depends on (None: not cached)."""
    kind = type(value)
    if kind in _SCALAR_SET:
        return kind
    if kind is list:
        return (list, len(value), type(value[0]) if value else None)
    if isinstance(value, wandb.Image) and _is_plain_image(value):
        return "plain image"
    return None


def _type_representatives(column: Sequence[Any]) -> Iterable[Any]:
    """The values whose wandb types, merged, give the column's type.

    One per Python type for scalars (plus a NaN float), one per element-type signature
    for lists of scalars, one per layer/class-map signature for images; every other
    media or container value (their types carry parameters).
    """
    uniform = _uniform_representative(column)
    if uniform is not None:
        yield uniform[0]
        return
    seen: set[Any] = set()
    for value in column:
        kind = type(value)
        if isinstance(value, wandb.Image):
            key = "plain image" if _is_plain_image(value) else _image_signature(value)
        elif kind in (list, tuple) and (key := _scalar_list_key(value)) is not None:
            pass
        elif isinstance(value, (WBValue, list, tuple, dict, np.ndarray)):
            yield value
            continue
        elif kind is float and math.isnan(value):
            key = (kind, "nan")
        else:
            key = kind
        if key not in seen:
            seen.add(key)
            yield value


# ---------------------------------------------------------------------------------
# Media references
# ---------------------------------------------------------------------------------
def media_files(value: Any) -> Iterable[Media]:
    """The file-backed media objects inside a cell: the image and its masks.

    Box layers are not among them: in artifact tables wandb inlines their ``box_data``
    (``BoundingBoxes2D.to_json``), so their files never become artifact entries.
    """
    if isinstance(value, Media):
        if value.file_is_set():
            yield value
        for mask in (getattr(value, "_masks", None) or {}).values():
            yield from media_files(mask)


class MediaFiles:
    """The files of one media kind of a logged data table, one row per sample, as arrays.

    What a pred version needs to show a data-table file by reference (its staging path,
    sha256, size, entry name and digest), in ~70 bytes a sample instead of a media object
    per sample kept for the whole fit.

    Attributes:
        counter: ``(N,)`` int64, the :class:`Stager` number in each file's staging name.
        sha256: ``(N, 32)`` uint8.
        md5: ``(N, 16)`` uint8, the entry digest (its first 10 bytes, hex, name the entry).
        size: ``(N,)`` int64 bytes.
        width, height: ``(N,)`` int32 (images; 0 for masks).
        stager_prefix: the staging file names' common part (``<dir>/fastevalcb-<hex>-``).
        media_subdir, suffix: entry names are ``<media_subdir>/<md5 hex[:20]><suffix>``.
    """

    def __init__(self, media_subdir: str, suffix: str, stager_prefix: str, counter: np.ndarray,
                 sha256: np.ndarray, md5: np.ndarray, size: np.ndarray, width: np.ndarray,
                 height: np.ndarray) -> None:
        self.media_subdir, self.suffix, self.stager_prefix = media_subdir, suffix, stager_prefix
        self.counter, self.sha256, self.md5 = counter, sha256, md5
        self.size, self.width, self.height = size, width, height
        self._row_of = np.full(int(counter.max()) + 1 if len(counter) else 0, -1, np.int64)
        self._row_of[counter] = np.arange(len(counter))

    @classmethod
    def of(cls, media: Sequence[Media], artifact: wandb.Artifact, media_subdir: str,
           suffix: str) -> MediaFiles:
        """The files of ``media`` (one batch), which a :class:`Stager` wrote into ``artifact``."""
        n = len(media)
        paths = [m._path for m in media]  # wandb-internal (Media._path, _sha256, _size)
        entries = [artifact._added_local_paths[path] for path in paths]  # wandb-internal
        prefixes, _, numbers = zip(*(path.rpartition("-") for path in paths)) if n else ((),) * 3
        stager_prefix = prefixes[0] + "-" if n else ""
        files = cls(
            media_subdir, suffix, stager_prefix,
            counter=np.array(numbers, np.int64).reshape(n),
            sha256=np.frombuffer(bytes.fromhex("".join(m._sha256 for m in media)),
                                 np.uint8).reshape(n, 32),
            md5=np.frombuffer(b"".join(base64.standard_b64decode(e.digest) for e in entries),
                              np.uint8).reshape(n, 16),
            size=np.array([m._size for m in media], np.int64).reshape(n),
            width=np.array([getattr(m, "_width", 0) for m in media], np.int32).reshape(n),
            height=np.array([getattr(m, "_height", 0) for m in media], np.int32).reshape(n))
        names = files.entry_names(slice(0, n))
        for path, prefix, entry, name in zip(paths, prefixes, entries, names):
            if prefix + "-" != stager_prefix or entry.path != name:
                raise ValueError(
                    f"{path} is not a file the Stager wrote as {entry.path} (media files of "
                    "a task callback's data table are staged by fastevalcb.tables.Stager)")
        return files

    @classmethod
    def concat(cls, parts: Sequence[MediaFiles]) -> MediaFiles:
        """One table's files from its batches' (same kind, same stager)."""
        first = parts[0]
        if any((p.media_subdir, p.suffix, p.stager_prefix) !=
               (first.media_subdir, first.suffix, first.stager_prefix) for p in parts):
            raise ValueError("MediaFiles.concat: parts of different kinds or stagers")
        arrays = [np.concatenate([getattr(p, name) for p in parts])
                  for name in ("counter", "sha256", "md5", "size", "width", "height")]
        return cls(first.media_subdir, first.suffix, first.stager_prefix, *arrays)

    def __len__(self) -> int:
        return len(self.counter)

    def file(self, i: int) -> FileInfo:
        """``(staging path, sha256 hex, size)`` of row ``i``: a media object's file."""
        return (f"{self.stager_prefix}{int(self.counter[i])}", self.sha256[i].tobytes().hex(),
                int(self.size[i]))

    def entry_name(self, i: int) -> str:
        return f"{self.media_subdir}/{self.md5[i, :10].tobytes().hex()}{self.suffix}"

    def entry_names(self, rows: slice) -> list[str]:
        return [f"{self.media_subdir}/{h}{self.suffix}" for h in _hex_rows(self.md5[rows, :10])]

    def digest(self, i: int) -> str:
        return base64.standard_b64encode(self.md5[i].tobytes()).decode("ascii")

    def row(self, path: str) -> int | None:
        """The row of a staging path, or None when it is not one of these files."""
        prefix, _, number = path.rpartition("-")
        if prefix + "-" != self.stager_prefix or not number.isdigit():
            return None
        counter = int(number)
        if counter >= len(self._row_of) or self._row_of[counter] < 0:
            return None
        return int(self._row_of[counter])


def _hex_rows(arr: np.ndarray) -> list[str]:
    """Hex text of each row of a 2-D uint8 array."""
    width = 2 * arr.shape[1]
    text = np.ascontiguousarray(arr).tobytes().hex()
    return [text[i:i + width] for i in range(0, len(text), width)]


class ImageColumn(Sequence):
    """A pred batch's plain images: rows of a data table's :class:`MediaFiles`, by reference.

    One value for a whole column of a :class:`StreamedTable` batch, which serializes it and
    adds its reference entries from the arrays: no media object per row. Read as a
    sequence (a :class:`ColumnarTable`, overlays drawn on it), its items are the same images
    as ``wandb.Image`` objects sharing the data table's files.

    Args:
        files: the data table's image files.
        rows: the rows of this batch.
        masks: the data table's ground-truth mask files, shown as the images' mask layer
            ``"ground_truth"`` (with ``mask_labels``); None: plain images.
    """

    def __init__(self, files: MediaFiles, rows: slice, masks: MediaFiles | None = None,
                 mask_labels: dict | None = None) -> None:
        self.files, self.rows, self.masks, self.mask_labels = files, rows, masks, mask_labels

    def __len__(self) -> int:
        return self.rows.stop - self.rows.start

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        row = self.rows.start + (i % len(self))
        files, layers = self.files, None
        if self.masks is not None:
            layers = {"ground_truth": new_image_mask(
                "ground_truth", None, self.mask_labels, self.masks.file(row), keep_data=False)}
        return new_image(files.file(row), int(files.width[row]), int(files.height[row]),
                         masks=layers)

    @property
    def plain(self) -> bool:
        return self.masks is None

    def entry_names(self) -> list[str]:
        return self.files.entry_names(self.rows)

    def json_texts(self, names: list[str]) -> list[str]:
        """The JSON text of each image once its file is the artifact's entry ``names[i]``:
        ``json.dumps(image.to_json(artifact), sort_keys=True)`` (``MediaIndex.image_json``),
        written straight from the arrays."""
        rows = self.rows
        return [_IMAGE_JSON.format(h, json.dumps(name), sha, w)
                for name, sha, w, h in zip(names, _hex_rows(self.files.sha256[rows]),
                                           self.files.width[rows].tolist(),
                                           self.files.height[rows].tolist())]


_IMAGE_JSON = ('{{"_type": "image-file", "format": "png", "height": {}, "path": {}, '
               '"sha256": "{}", "width": {}}}')


class MediaIndex:
    """Which local media files are entries of a logged data artifact.

    Built once after the data table is added to its artifact; used for every
    pred-table version to turn those files into reference entries. Built from the table
    (:meth:`from_table`: a dict per file, for tables the caller keeps anyway) or from
    :class:`MediaFiles` arrays (:meth:`from_files`: the task callbacks, which keep no
    object per sample).
    """

    def __init__(self, artifact: wandb.Artifact,
                 entry_by_local_path: dict[str, tuple[str, str]] | None = None,
                 files: Sequence[MediaFiles] = ()) -> None:
        self.client_id: str = artifact._client_id  # wandb-internal
        self._entry_by_local_path = entry_by_local_path or {}
        self._files = [f for f in files if f is not None]

    @classmethod
    def from_table(cls, artifact: wandb.Artifact, table: wandb.Table) -> MediaIndex:
        index: dict[str, tuple[str, str]] = {}
        for row in table.data:
            for cell in row:
                for media in media_files(cell):
                    entry = artifact._added_local_paths.get(media._path)  # wandb-internal
                    if entry is not None:
                        index[media._path] = (entry.path, entry.digest)
        return cls(artifact, index)

    @classmethod
    def from_files(cls, artifact: wandb.Artifact, files: Sequence[MediaFiles]) -> MediaIndex:
        return cls(artifact, files=files)

    def __len__(self) -> int:
        return len(self._entry_by_local_path) + sum(len(f) for f in self._files)

    def _lookup(self, media: Media) -> tuple[str, str] | None:
        """``(entry name, digest)`` of a media object's file in the data artifact."""
        found = self._entry_by_local_path.get(media._path)
        if found is not None or not self._files:
            return found
        for files in self._files:
            row = files.row(media._path)
            if row is not None:
                return files.entry_name(row), files.digest(row)
        return None

    def entry_name(self, media: Media) -> str | None:
        found = self._lookup(media)
        return None if found is None else found[0]

    def reference_uri(self, entry_name: str) -> str:
        return f"{CLIENT_REF_SCHEME}://{self.client_id}/{entry_name}"

    def add_references(self, target: wandb.Artifact, table: wandb.Table | Iterable[Any]) -> int:
        """Give ``target`` reference entries for every data-artifact file ``table`` uses
        (a table, or its cells).

        Afterwards wandb's own media serialization finds those files already in
        ``target`` and writes their entry path instead of staging a copy.

        Returns:
            The number of reference entries added.
        """
        added = 0
        local_paths = target._added_local_paths  # wandb-internal
        entries = target.manifest.entries
        cells = (itertools.chain.from_iterable(table.data) if isinstance(table, wandb.Table)
                 else table)
        for cell in cells:
            if not isinstance(cell, Media):
                continue
            for media in media_files(cell):
                if media._path in local_paths:
                    continue
                found = self._lookup(media)
                if found is None:
                    continue
                name, digest = found
                if name not in entries:
                    # What manifest.add_entry does, minus re-validating a path that
                    # is already a valid entry name of the data artifact.
                    entries[name] = self.reference_entry(name, digest)
                    added += 1
                local_paths[media._path] = entries[name]
        return added

    def add_column_references(self, target: wandb.Artifact, column: ImageColumn) -> list[str]:
        """Reference entries of ``target`` for a plain :class:`ImageColumn`'s files, straight
        from its arrays (what :meth:`add_references` adds for the same images).

        Returns:
            The entry names, one per row.
        """
        entries = target.manifest.entries
        names = column.entry_names()
        md5 = column.files.md5[column.rows].tobytes()
        for i, name in enumerate(names):
            if name not in entries:
                digest = base64.standard_b64encode(md5[16 * i:16 * i + 16]).decode("ascii")
                entries[name] = self.reference_entry(name, digest)
        return names

    def reference_entry(self, entry_name: str, digest: str) -> ArtifactManifestEntry:
        """A new manifest entry referencing ``entry_name`` (of ``digest``) of the data artifact.

        The entry ``target.add_reference(reference_uri(name), name)`` would add (what
        ``WBLocalArtifactHandler.store_path`` builds): ``add_reference`` costs ~0.1 ms a
        call, which adds up to a second per 10k rows.
        """
        return _new_entry(entry_name, digest, 0, ref=self.reference_uri(entry_name))

    def image_json(self, image: wandb.Image, artifact: wandb.Artifact) -> dict[str, Any]:
        """``image.to_json(artifact)`` of a plain image whose file is already an entry of
        ``artifact`` (a reference to the data artifact), without wandb's per-image work."""
        entry = artifact._added_local_paths.get(image._path)  # wandb-internal
        if entry is None:
            return _json_helper(image, artifact)
        out = {"path": entry.path, "sha256": image._sha256, "_type": "image-file",
               "format": image.format, "width": image._width, "height": image._height}
        if image._caption is not None:
            out = {"caption": image._caption, **out}
        return out


def log_data_artifact(
    run: Any, table: wandb.Table, name: str, type: str, table_name: str,
    artifact: wandb.Artifact | None = None, index: MediaIndex | None = None,
) -> MediaIndex:
    """Log the data table as an artifact the run uses (online) or produces (offline).

    Online this is stock's ``use_artifact`` + ``wait``: the run is recorded as a
    consumer of the data. ``use_artifact`` is refused offline, so there the artifact
    is logged as an output of the run instead; pred versions reference it either way.

    Args:
        artifact: the artifact to log, when its media were already staged into it
            (:class:`Stager`); default: a new one named ``name``.
        index: the index of those files (:meth:`MediaIndex.from_files`); default: one
            built from the table's cells.
    """
    artifact = artifact if artifact is not None else wandb.Artifact(name, type=type)
    add_table(artifact, table, table_name)
    index = index if index is not None else MediaIndex.from_table(artifact, table)
    if run.offline:
        run.log_artifact(artifact)
    else:
        run.use_artifact(artifact)
        artifact.wait()
    for row in table.data:
        for cell in row:
            release_pixels(cell)
    release_table(table)
    _uncache(artifact)
    return index


def add_table(artifact: wandb.Artifact, table: wandb.Table, name: str) -> Any:
    """``artifact.add(table, name)``, writing the JSON with the C encoder.

    ``Artifact.add`` writes with ``json.dump``, which always takes the pure-Python
    encoder path (~1 s per 10k-row table); ``json.dumps`` with the same options writes
    the same text. :class:`JSONText` box layers are spliced in as they are. Tables
    already added go through ``Artifact.add``.
    """
    if id(table) in artifact._added_objs or table._get_artifact_entry_ref_url() is not None:
        return artifact.add(table, name)  # wandb-internal (_added_objs)
    path = table.with_suffix(name)
    if path.startswith("media/tables") or artifact.manifest.get_entry_by_path(path):
        return artifact.add(table, name)
    if isinstance(table, StreamedTable):
        if table.artifact is not artifact:
            raise ValueError("a StreamedTable can only be added to the artifact it was "
                             "serialized into")
        text = None
    elif isinstance(table, ColumnarTable):
        fragments: list[str] = []
        with _gc_paused():
            text = json.dumps(table.to_json(artifact, fragments), sort_keys=True)
        if fragments:
            text = _FRAGMENT_JSON.sub(lambda m: fragments[int(m.group(1))], text)
    else:
        text = json.dumps(table.to_json(artifact), sort_keys=True)
    # Written straight into wandb's staging dir and added as is ("immutable": no second
    # copy), as new_file + its staging copy would leave it; wandb < 0.21's new_file kept
    # it in the artifact's own temp dir, deleted with the artifact or at interpreter exit.
    staged = os.path.join(get_staging_dir(),
                          f"fastevalcb-{os.urandom(6).hex()}-{os.path.basename(path)}")
    with open(staged, "x", encoding="utf-8") as f:
        if text is None:
            table.write_json(f)
            table.close()  # the rows live in the staged file now
        else:
            f.write(text)
    os.chmod(staged, stat.S_IRUSR)
    entry = artifact.add_file(staged, name=path, skip_cache=True, policy="immutable")
    artifact._added_objs[id(table)] = (table, entry)  # wandb-internal: as Artifact.add does
    if table._artifact_target is None:
        table._set_artifact_target(artifact, entry.path)
    return entry


@contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a table's JSON is built.

    Building it allocates a few lists per row and nothing cyclic; with a large heap (a big
    validation set's handles), each automatic collection walks every live object, which
    made the collector most of a 10k-row version's JSON time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def release_table(table: wandb.Table) -> None:
    """Break the table <-> artifact cycle once the artifact is logged.

    ``artifact.add(table)`` makes the table point at its artifact and the artifact at the
    table (``_artifact_target`` / ``_added_objs``). Left alone, a logged version's table,
    its media objects and the artifact's manifest wait for a full garbage collection
    (rare with a large heap), so memory grew with every version.
    """
    table._artifact_target = None  # wandb-internal (WBValue._artifact_target)


def _uncache(artifact: wandb.Artifact) -> None:
    """Drop a logged artifact from wandb's instance cache.

    wandb keeps the last 100 ``Artifact`` objects it made, by client id
    (``artifact_instance_cache_by_client_id``), for resolving client-id references it adds
    itself. We add no such reference through wandb (:class:`MediaIndex` writes the entries;
    wandb-core resolves them from the records), and each cached artifact holds a manifest
    entry per file and its table, media objects included (``_added_objs``): kept, the data
    table stayed in memory for the whole fit and every pred version added a few KB per
    sample. Logged artifacts are dropped from it.
    """
    artifact._added_objs.clear()  # wandb-internal: the table and its media objects
    tmp = getattr(artifact, "_tmp_dir", None)  # wandb-internal
    if tmp is not None and any(
        str(entry.local_path or "").startswith(tmp.name)
        for entry in artifact.manifest.entries.values()
    ):
        return  # wandb < 0.21 keeps its own new_file()s (class sets) in the artifact's
        # temp dir, deleted with the artifact: the cache keeps it alive until upload
    cache = artifact_cache_by_client_id()
    if cache.get(artifact._client_id) is artifact:  # wandb-internal (_client_id)
        del cache[artifact._client_id]


def artifact_cache_by_client_id() -> dict:
    """wandb's capped cache of Artifact objects by client id (wandb-internal).

    ``artifact_instance_cache_by_client_id`` since wandb 0.21; before, one
    ``artifact_instance_cache`` keyed by client id and server id alike.
    """
    from wandb.sdk.artifacts import artifact_instance_cache as module  # wandb-internal

    return getattr(module, "artifact_instance_cache_by_client_id", None) or \
        module.artifact_instance_cache


def release_pixels(cell: Any) -> None:
    """Drop the pixel arrays a logged image keeps (they live in its media files now)."""
    if isinstance(cell, wandb.Image):
        cell._free_ram()  # wandb-internal
        for mask in (cell._masks or {}).values():  # wandb-internal
            val = getattr(mask, "_val", None)
            if isinstance(val, dict) and "mask_data" in val:
                mask._val = {k: v for k, v in val.items() if k != "mask_data"}


def define_step_metrics(run: Any, prefix: str) -> str:
    """Key every ``<prefix>/*`` metric by ``<prefix>/global_step`` (``define_metric``).

    Summary metrics are then logged without an explicit ``step``, so they never clash
    with other callbacks' ``wandb.log`` calls ("Step must only increase" drops data).

    Returns:
        The step metric's name.
    """
    step_metric = f"{prefix}/global_step"
    run.define_metric(step_metric, hidden=True)
    run.define_metric(f"{prefix}/epoch", step_metric=step_metric)
    run.define_metric(f"{prefix}/*", step_metric=step_metric)
    return step_metric


def log_metrics(run: Any, metrics: Mapping[str, Any]) -> None:
    """``run.log(metrics)`` with no explicit step (see :func:`define_step_metrics`)."""
    run.log(dict(metrics))


def pred_artifact(run: Any, type: str = "evaluation",
                  metadata: dict[str, Any] | None = None) -> wandb.Artifact:
    """A new version of the run's pred-table artifact, ``run_<id>_pred``."""
    return wandb.Artifact(f"run_{run.id}_pred", type=type, metadata=metadata)


def log_pred_artifact(
    run: Any,
    table: wandb.Table,
    media_index: MediaIndex | None,
    type: str,
    table_name: str,
    aliases: list[str],
    metadata: dict[str, Any],
) -> wandb.Artifact:
    """Log one pred-table version whose data-table media are references.

    A :class:`StreamedTable` is already serialized into its artifact (:func:`pred_artifact`),
    references included; it gets the metadata here.
    """
    if isinstance(table, StreamedTable):
        artifact = table.artifact
        if artifact.type != type:
            raise ValueError(f"the streamed table's artifact is of type {artifact.type!r}, "
                             f"not {type!r}")
        artifact.metadata = metadata
    else:
        artifact = pred_artifact(run, type, metadata)
        if media_index is not None:
            media_index.add_references(artifact, table)
            if isinstance(table, ColumnarTable):
                table.media_index = media_index
    add_table(artifact, table, table_name)
    run.log_artifact(artifact, aliases=aliases)
    release_table(table)
    _uncache(artifact)
    return artifact


# ---------------------------------------------------------------------------------
# The run's lifetime
# ---------------------------------------------------------------------------------
def on_run_finish(run: Any, fn: Callable[[], None]) -> None:
    """Call ``fn()`` when ``run`` finishes, while it still accepts ``log``/``log_artifact``.

    ``run.finish()``, ``wandb.finish()`` and ``wandb.init(reinit="finish_previous")`` all
    end in ``Run._finish``, which first calls the run's ``EARLY`` teardown hooks, then
    marks the run finished and sends its last messages. (Interpreter exit does not go
    through it: wandb's service ends the run from an ``atexit`` hook; see
    :mod:`fastevalcb.worker`.) ``fn`` must not raise: an exception would abort the finish.
    """
    from wandb.sdk.wandb_run import TeardownHook, TeardownStage  # wandb-internal

    run._teardown_hooks.append(TeardownHook(call=fn, stage=TeardownStage.EARLY))  # wandb-internal


def run_finished(run: Any) -> bool:
    """Whether ``run`` has finished (its ``log``/``log_artifact`` raise ``UsageError``)."""
    return bool(run._is_finished)  # wandb-internal


# ---------------------------------------------------------------------------------
# Media objects built from files we already wrote
# ---------------------------------------------------------------------------------
# ``wandb.Image(array, boxes=..., masks=...)`` does all its work eagerly and serially in
# the constructor (PIL PNG encode holding the GIL, per-box validation, a JSON temp file,
# a PNG per mask). The functions below build the *same* objects (same classes, same
# attributes, same temp-file layout in wandb's media staging directory) from files
# ``fastevalcb.media`` wrote and hashed on worker threads, so wandb binds, copies and
# serializes them as if it had made them itself. Attribute names mirror wandb 0.31
# (``Image._initialize_from_data`` / ``_set_initialization_meta``, ``JSONMetadata``,
# ``ImageMask.__init__``, ``Media._set_file``); ``tests/test_tables.py`` compares every
# attribute with a stock-built object.

FileInfo = tuple  # (path, sha256 hex, size in bytes)

BOXES_SUFFIX = "." + BoundingBoxes2D.type_name() + ".json"  # ".boxes2D.json"
MASK_SUFFIX = "." + ImageMask.type_name() + ".png"  # ".mask.png"
IMAGE_SUFFIX = ".png"
IMAGE_DIR = wandb.Image.get_media_subdir()  # "media/images": where artifacts keep images
MASK_DIR = ImageMask.get_media_subdir()  # "media/images/mask"


def media_tmp_dir() -> str:
    """wandb's media staging directory, where wandb.Image writes its temp files."""
    return MEDIA_TMP.name


def payload_json(payload: dict) -> bytes:
    """The exact bytes ``JSONMetadata.__init__`` writes for ``payload`` (utf-8 JSON text).

    wandb 0.31 serializes with ``pydantic_core.to_json`` (compact separators, NaN/Infinity
    constants, non-ASCII kept), via ``util.json_dump_uncompressed``; we call the same code.
    """
    return json_util.dumps(payload, cls=JSONEncoderUncompressed).encode("utf-8")


def _set_file(media: Media, file: FileInfo, extension: str | None) -> None:
    """``Media._set_file(path, is_tmp=True, extension)`` with the hash already computed."""
    media._path, media._sha256, media._size = file
    media._is_tmp = True
    media._extension = extension


def file_of(media: Media) -> FileInfo | None:
    """``(path, sha256, size)`` of a file-backed media object, or None."""
    if not media.file_is_set():
        return None
    return media._path, media._sha256, media._size


def image_layers(image: wandb.Image) -> tuple[dict, dict]:
    """The ``(boxes, masks)`` layers of an image, keyed by layer name."""
    return dict(image._boxes or {}), dict(image._masks or {})


def image_size(image: wandb.Image) -> tuple[int, int]:
    """``(width, height)`` of an image."""
    return image._width, image._height


def new_boxes2d(
    key: str, box_data: list, class_labels: dict, file: FileInfo | None
) -> BoundingBoxes2D:
    """A ``BoundingBoxes2D`` whose JSON file ``file`` was already written.

    The file must hold ``json.dumps({"box_data": box_data, "class_labels": class_labels})``
    (the text ``JSONMetadata.__init__`` writes). ``file=None``: no file, for images that
    only go into artifact tables (which inline ``box_data``; ``wandb.log`` needs the file).
    """
    boxes = BoundingBoxes2D.__new__(BoundingBoxes2D)
    Media.__init__(boxes)
    boxes._val = box_data
    if file is not None:
        _set_file(boxes, file, BOXES_SUFFIX)
    boxes._key = key
    boxes._class_labels = class_labels
    return boxes


def new_image_mask(
    key: str, mask, class_labels: dict, file: FileInfo, keep_data: bool = True
) -> ImageMask:
    """An ``ImageMask`` whose PNG ``file`` (mode L, pixels = ``mask``) was already written.

    ``keep_data=False`` does not keep the mask array (wandb only reads it in
    ``ImageMask.__init__``; the file holds the pixels), so memory stays bounded.
    """
    m = ImageMask.__new__(ImageMask)
    Media.__init__(m)
    m._val = ({"mask_data": mask, "class_labels": class_labels} if keep_data
              else {"class_labels": class_labels})
    m._key = key
    _set_file(m, file, MASK_SUFFIX)
    return m


def new_image(
    file: FileInfo,
    width: int,
    height: int,
    boxes: dict[str, BoundingBoxes2D] | None = None,
    masks: dict[str, ImageMask] | None = None,
    caption: str | None = None,
    classes_cache: dict | None = None,
) -> wandb.Image:
    """A ``wandb.Image`` backed by the PNG ``file`` we already wrote.

    Equivalent to ``wandb.Image(pixels, caption=caption, boxes=boxes, masks=masks)``.
    ``classes_cache``: images of one table batch share their ``Classes`` object through it,
    so adding them to the artifact adds the class set once, not once per image (~70 µs).
    """
    img = wandb.Image.__new__(wandb.Image)
    Media.__init__(img, caption=caption)
    img._grouping = None
    img._width = width
    img._height = height
    img._image = None
    img._classes = None
    img._boxes = boxes or None
    img._masks = masks or None
    img._file_type = None
    img.format = "png"
    _set_file(img, file, None)
    total_classes: dict = {}
    for b in (boxes or {}).values():
        total_classes.update(b._class_labels)
    for m in (masks or {}).values():
        total_classes.update(m._val["class_labels"])
    if total_classes:
        key = tuple(total_classes.items())
        classes = None if classes_cache is None else classes_cache.get(key)
        if classes is None:
            classes = Classes([{"id": k, "name": v} for k, v in total_classes.items()])
            if classes_cache is not None:
                classes_cache[key] = classes
        img._classes = classes
    return img


# ---------------------------------------------------------------------------------
# Staging media files straight into an artifact
# ---------------------------------------------------------------------------------
class Stager:
    """Writes media files once, straight into wandb's artifact staging directory.

    ``artifact.add(table)`` would, per media file of the table, copy the temp file into
    the staging directory, read it again for its md5 and validate a new manifest entry
    (``Artifact.add_file(path, name, is_tmp=True)``: ~0.6 ms a file, 10x the PNG encode
    of a 32x32 image). Here the encoder thread writes the PNG bytes to their staging file
    directly, with both digests computed from the bytes in memory, and registers the entry
    ``add_file`` would have made (same name, digest, size, read-only staging copy), so
    serializing the table finds every file already added and copies nothing.

    Thread-safe: encoder threads call :meth:`write` concurrently.

    Args:
        artifact: the artifact the files become entries of (before it is logged).
    """

    def __init__(self, artifact: wandb.Artifact) -> None:
        self.artifact = artifact
        # A folder of its own in the staging dir: creating files in a small folder is
        # ~2x faster than among the staging dir's many, and threads contend less.
        self.directory = os.path.join(get_staging_dir(), f"fastevalcb-{os.urandom(6).hex()}")
        os.makedirs(self.directory)
        self._lock = threading.Lock()
        self._counter = itertools.count()
        self._xxh = "XXH128" in str(getattr(artifact, "digest_algorithm", ""))

    def write(self, data: bytes, media_subdir: str, suffix: str) -> FileInfo:
        """Stage ``data`` as the entry ``<media_subdir>/<digest[:20]><suffix>``.

        Args:
            data: the file's bytes (a PNG).
            media_subdir: the media type's folder (``wandb.Image.get_media_subdir()``).
            suffix: what ``add_file`` keeps of the temp file's name: ``".png"``,
                ``".mask.png"``.

        Returns:
            ``(staging path, sha256 hex, size)``: the media object's file.
        """
        if self._xxh:  # wandb-internal: the digest add_file would compute
            from wandb.sdk.lib.hashutil import _xxh128
            hasher = _xxh128(data)
        else:
            hasher = hashlib.md5(data, usedforsecurity=False)
        digest = base64.standard_b64encode(hasher.digest()).decode("ascii")
        name = f"{media_subdir}/{hasher.hexdigest()[:20]}{suffix}"
        path = f"{self.directory}/f-{next(self._counter)}"
        # Created read-only, as add_file leaves its staging copy (one syscall, no chmod);
        # os.open/os.write skip the buffered file object (a file costs ~20 µs, not ~50).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        entry = _new_entry(name, digest, len(data), local_path=path)
        with self._lock:
            # wandb-internal: what Artifact._add_local_file records
            self.artifact.manifest.entries.setdefault(name, entry)
            self.artifact._added_local_paths[path] = self.artifact.manifest.entries[name]
        return path, hashlib.sha256(data).hexdigest(), len(data)


def _new_entry(path: str, digest: str, size: int, local_path: str | None = None,
               ref: str | None = None) -> ArtifactManifestEntry:
    """The manifest entry ``Artifact._add_local_file`` makes for a staged local file, or
    ``add_reference`` for a reference (``ref``).

    ``path`` must already be a normal POSIX entry name (``media/images/<hex>.png``), as
    every name we make is. Built without pydantic's validation (~0.4 ms an entry) and
    without ``LogicalPath``'s pathlib round trip: the entry's fields, set as pydantic's
    ``model_construct`` sets them, from values of the types the validators would produce
    (~1 µs; a pred version makes one per sample). ``tests/test_tables.py`` checks both kinds
    equal wandb's own entries, field by field.
    """
    fields = {"path": _logical_path(path), "digest": digest, "ref": ref,
              "birth_artifact_id": None, "size": size, "extra": {},
              "local_path": local_path, "skip_cache": False}
    if _ENTRY_TEMPLATE is None:  # wandb releases before pydantic entries
        return ArtifactManifestEntry(**fields)
    entry = _object_new(ArtifactManifestEntry)
    _object_setattr(entry, "__dict__", fields)
    for name, value in _ENTRY_TEMPLATE.items():
        # Every field is set, so pydantic never adds to the fields-set: one set serves all
        # entries (a set is ~700 bytes, most of an entry's memory). Private attributes
        # are per entry.
        _object_setattr(entry, name, value.copy() if isinstance(value, dict) else value)
    return entry


def _logical_path(path: str) -> LogicalPath:
    """``LogicalPath(path)`` for a name that is already normal (what it would return)."""
    return str.__new__(LogicalPath, path)


def _entry_template() -> dict[str, Any] | None:
    """The pydantic bookkeeping ``model_construct`` gives a new entry (wandb-internal)."""
    construct = getattr(ArtifactManifestEntry, "model_construct", None)
    if construct is None:
        return None
    entry = construct(path=LogicalPath("a"), digest="", ref=None, birth_artifact_id=None,
                      size=0, extra={}, local_path=None, skip_cache=False)
    return {name: getattr(entry, name) for name in
            ("__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")}


_object_new, _object_setattr = object.__new__, object.__setattr__
_ENTRY_TEMPLATE = _entry_template()
