""":class:`ColumnarTable`, a ``wandb.Table`` filled and serialized column by column,
:class:`ScalarTable` (a chart's table of plain cells), and the JSON and type-inference
helpers every table here shares."""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import wandb
from wandb.data_types import WBValue

from fastevalcb.tables import _wandb
from fastevalcb.tables._wandb import is_plain_image as _is_plain_image
from fastevalcb.tables.references import ImageColumn, LayeredImages, MediaIndex

_JSON_SCALARS = (str, int, float, bool, type(None))


class TableSchemaError(ValueError):
    """A row or a column set does not match the table's declared columns."""


class JSONText(list[Any]):
    """A JSON array kept as its text (what ``json.dumps(value, sort_keys=True)`` writes).

    Used as a box layer's ``box_data``: building a box dict per box and encoding them
    again in the table would repeat the work per image; the text is built once, straight from the
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
        values: list[Any] = json.loads(self.text)
        return values

    def __iter__(self) -> Iterator[Any]:
        return iter(self.decoded())

    def __len__(self) -> int:
        return len(self.decoded())

    def __getitem__(self, index: Any) -> Any:
        return self.decoded()[index]

    def __bool__(self) -> bool:
        return self.text != "[]"

    def __eq__(self, other: object) -> bool:
        return self.decoded() == (other.decoded() if isinstance(other, JSONText) else other)

    __hash__ = None

    def __repr__(self) -> str:
        return f"JSONText({self.text[:60]!r}{'...' if len(self.text) > 60 else ''})"


_FRAGMENT = "\x00fastevalcb-json:{}\x00"
_FRAGMENT_JSON = re.compile(r'"\\u0000fastevalcb-json:(\d+)\\u0000"')


def validate_columns(columns: Any, what: str) -> list[str | int]:
    """Check a declared column list: a non-empty list of unique, non-blank str/int names."""
    if isinstance(columns, (str, bytes)) or not isinstance(columns, Sequence):
        raise TableSchemaError(
            f"{what} must be a list of column names, got {type(columns).__name__}: {columns!r}"
        )
    names: list[Any] = list(columns)
    if not names:
        raise TableSchemaError(f"{what} must name at least one column, got []")
    bad = [c for c in names if type(c) not in (str, int)]
    if bad:
        raise TableSchemaError(f"{what} names must be str or int, got {bad!r}")
    blank = [i for i, c in enumerate(names) if type(c) is str and not c.strip()]
    if blank:
        raise TableSchemaError(
            f"{what} names must be non-empty, got {names[blank[0]]!r} at position "
            f"{blank[0]} of {names}"
        )
    dupes = sorted({str(c) for c in names if names.count(c) > 1})
    if dupes:
        raise TableSchemaError(f"{what} has duplicate column names: {dupes}")
    return names


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

    def __init__(self, columns: Sequence[str | int], allow_mixed_types: bool = False) -> None:
        super().__init__(
            columns=validate_columns(columns, "columns"), allow_mixed_types=allow_mixed_types
        )
        self._allow_mixed = allow_mixed_types
        self.media_index: MediaIndex | None = None  # set when its images are references

    # -- filling ------------------------------------------------------------------
    def add_data(self, *data: Any) -> None:
        """Append one row; its values must match the declared columns in order."""
        self._check_row(data)
        self.data.append(list(data))

    def _check_row(self, data: Sequence[Any]) -> None:
        if len(data) != len(self.columns):
            raise TableSchemaError(
                f"add_data got {len(data)} values, expected {len(self.columns)} "
                f"for columns {self.columns}"
            )

    def add_columns(self, columns: Mapping[Any, Any]) -> None:
        """Append rows given as whole columns: ``{name: array or list}``.

        Every declared column must be present, each with the same length. numpy
        arrays are converted once per column (``tolist``), not cell by cell.
        """
        self.data.extend(map(list, zip(*self._checked_columns(columns))))

    def _checked_columns(self, columns: Mapping[Any, Any]) -> list[Sequence[Any]]:
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
    def as_wandb_table(self) -> wandb.Table:
        """A plain ``wandb.Table`` of the same rows, for wandb's own serialization: box
        layers kept as text decoded to lists, every row typed by ``add_data``.

        A column wandb cannot type (a list of numbers holding a NaN, which wandb types as
        None) makes the whole table of mixed types rather than unloggable."""
        if _wandb.fast("tables"):  # our error for incompatible types, before wandb's
            columns = list(zip(*self.data)) if self.data else [() for _ in self.columns]
            for name, column in zip(self.columns, columns):
                self._infer_column_type(name, column)
        try:
            return wandb.Table(
                columns=list(self.columns), data=self.data, allow_mixed_types=self._allow_mixed
            )
        except TypeError as err:
            self._raise_for_incompatible_column(err)
            return wandb.Table(columns=list(self.columns), data=self.data, allow_mixed_types=True)

    def _raise_for_incompatible_column(self, err: TypeError) -> None:
        """wandb refused the rows (the public path): our error naming the column, unless
        the column is one wandb cannot type (numbers lists holding a NaN)."""
        for i, name in enumerate(self.columns):
            column = [row[i] for row in self.data]
            if any(_is_scalar_list(v) and any(x != x for x in v) for v in column):
                continue
            try:
                wandb.Table(columns=[name], data=[[v] for v in column])
            except TypeError:
                kinds = sorted({type(v).__name__ for v in column})
                raise TypeError(
                    f"column {name!r} mixes incompatible types: {', '.join(kinds)}; "
                    "pass allow_mixed_types=True"
                ) from err

    def to_json(self, run_or_artifact: Any) -> dict[str, Any]:
        """wandb's own JSON of the same rows, for ``Artifact.add(table)`` and ``wandb.log``
        called on this table directly; :func:`~fastevalcb.tables.add_table` writes it
        through :class:`~fastevalcb.tables.StreamedTable`, the one writer of our tables."""
        return self.as_wandb_table().to_json(run_or_artifact)

    @property
    def allow_mixed_types(self) -> bool:
        return self._allow_mixed

    def _infer_column_type(self, name: str | int, column: Sequence[Any]) -> Any:
        """The column's wandb type, merged from one representative per kind of value.

        A column holding a table link (a ``get_index()`` value) is first cast to the link's
        type, not optional, as ``wandb.Table.add_data`` casts it: ``foreignIndex`` of the
        linked table, which plain ints then fit.
        """
        col_type = _wandb.column_type_map(self)[name]
        representatives = list(_type_representatives(column))
        link = next(filter(_wandb.is_table_link, representatives), None)
        if link is not None:
            col_type = _wandb.link_type(col_type, link) or col_type
        for value in representatives:
            merged = _wandb.merge_type(col_type, value, self._allow_mixed)
            if merged is None:
                raise TypeError(
                    f"column {name!r} mixes incompatible types: {col_type} and "
                    f"{type(value).__name__} ({value!r:.80}); pass allow_mixed_types=True"
                )
            col_type = merged
        return col_type


class ScalarTable(wandb.Table):
    """A ``wandb.Table`` of plain cells (``str``, ``int``, ``float``, ``bool``, ``None``:
    a chart's rows) whose artifact JSON is built a column at a time.

    Everything but the rows comes from wandb's own ``to_json``, run on the table with its
    rows set aside: the keys, ``_type`` and the column types (fixed by the constructor's
    ``dtype``, or ``allow_mixed_types``). The rows are the JSON wandb writes for those
    cells (a NaN as null), without its per-cell ``_json_helper``. With any other cell, for
    a run, with more rows than wandb writes to an artifact, or with the ``tables`` fast
    path off, it is wandb's ``to_json`` as it is.
    """

    def to_json(self, run_or_artifact: Any) -> dict[str, Any]:
        rows = self.data
        if (
            not isinstance(run_or_artifact, wandb.Artifact)
            or type(rows) is not list
            or len(rows) == 0
            or len(rows) > getattr(wandb.Table, "MAX_ARTIFACT_ROWS", 200_000)
            or getattr(self, "log_mode", None) == "INCREMENTAL"
            or not _wandb.fast("tables")
        ):
            return dict(super().to_json(run_or_artifact))
        width = len(self.columns)
        columns = list(zip(*rows))
        if (
            len(columns) != width
            or not all(len(row) == width for row in rows)  # zip cuts longer rows
            or not all(_SCALAR_SET.issuperset(map(type, column)) for column in columns)
        ):
            return dict(super().to_json(run_or_artifact))
        self.data = []
        try:
            json_dict = dict(super().to_json(run_or_artifact))
        finally:
            self.data = rows
        cells = [_column_to_json(column, run_or_artifact) for column in columns]
        json_dict["data"] = [list(row) for row in zip(*cells)]
        json_dict["nrows"] = len(rows)
        return json_dict


def _column_to_list(data: Any) -> Any:
    if isinstance(data, (ImageColumn, LayeredImages)):
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


def _scalar_list_key(value: Any) -> tuple[Any, ...] | None:
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
    image_json: Callable[[wandb.Image], dict[str, Any]] | None = None,
) -> list[Any]:
    """JSON-ready values of one column.

    Scalar columns and lists of scalars pass through, a NaN written as null as wandb
    writes it (``util.json_friendly``: JSON has no NaN). Plain images that are
    data-artifact references serialize to the same JSON in every pred version, so
    ``media_index`` caches it. ``image_json``: serializes the other images (wandb's
    ``to_json`` otherwise). Box layers kept as :class:`JSONText` become placeholders
    into ``fragments`` (or plain lists without it).
    """
    kinds = set(map(type, column))
    if _SCALAR_SET.issuperset(kinds):
        if float in kinds and _holds_nan(column, kinds):
            return _nan_to_null(column)
        return list(column)
    if bool not in kinds and all(issubclass(kind, int) for kind in kinds):
        return list(map(int, column))  # ints and table links (get_index() values): numbers
    if kinds == {list} and _SCALAR_SET.issuperset(
        items := set(map(type, itertools.chain.from_iterable(column)))
    ):
        # lists of scalars are JSON as they are, NaNs aside
        if float in items and _holds_nan(itertools.chain.from_iterable(column), items):
            return [_nan_to_null(v) for v in column]
        return list(column)
    out = []
    for v in column:
        if type(v) in _JSON_SCALARS:
            out.append(None if v != v else v)
        elif _is_scalar_list(v):
            out.append(_nan_to_null(v))
        elif media_index is not None and _is_plain_image(v):
            out.append(media_index.image_json(v, artifact))
        else:
            value = (
                image_json(v)
                if image_json is not None and isinstance(v, wandb.Image)
                else _wandb.json_helper(v, artifact)
            )
            if isinstance(v, wandb.Image) and isinstance(value, dict) and value.get("boxes"):
                value["boxes"] = {
                    key: _fragment(layer, fragments) for key, layer in value["boxes"].items()
                }
            out.append(value)
    return out


def _holds_nan(values: Iterable[Any], kinds: set[type] | frozenset[type]) -> bool:
    """Whether ``values`` (of Python types ``kinds``) hold a NaN float (summed at C speed
    when all are floats: a NaN, or inf - inf, makes the sum NaN)."""
    total = sum(values) if kinds == {float} else sum(v for v in values if type(v) is float)
    return total != total


def _nan_to_null(values: Sequence[Any]) -> list[Any]:
    """``values`` as a list, each NaN float None (one pass at C speed when there is none)."""
    total = sum(v for v in values if type(v) is float)
    if total == total:  # no NaN (nor inf - inf) among them
        return list(values)
    return [None if type(v) is float and v != v else v for v in values]


def _fragment(value: Any, fragments: list[str] | None) -> Any:
    if not isinstance(value, JSONText):
        return value
    if fragments is None:
        return value.decoded()
    fragments.append(value.text)
    return _FRAGMENT.format(len(fragments) - 1)


def _score_keys(box_data: Any) -> frozenset[str]:
    if isinstance(box_data, JSONText):
        return box_data.score_keys
    return frozenset(k for box in box_data for k in box.get("scores", ()))


def _image_signature(image: wandb.Image) -> tuple[Any, ...]:
    """What an image's wandb type depends on: layer names, class maps and score keys."""
    boxes, masks = _wandb.image_layers(image)
    classes = _wandb.image_classes(image)
    return (
        "image",
        None
        if classes is None
        else tuple((c.get("id"), c.get("name")) for c in _wandb.class_set(classes)),
        tuple(
            sorted(
                (key, id(labels), _score_keys(data))
                for key, (data, labels) in ((k, _wandb.box_layer(b)) for k, b in boxes.items())
            )
        ),
        tuple(sorted((key, id(_wandb.mask_labels(m))) for key, m in masks.items())),
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
        return _scalar_list_key(value)
    if isinstance(value, wandb.Image) and _is_plain_image(value):
        return "plain image"
    return None


def _type_representatives(column: Sequence[Any]) -> Iterable[Any]:
    """The values whose wandb types, merged, give the column's type.

    One per Python type for scalars (plus a NaN float), one per element-type signature
    for lists of scalars, one per layer/class-map signature for images; every other
    media or container value (their types carry parameters).

    A list of numbers is typed with its NaNs as 0.0: wandb types a NaN as None, so
    ``[0.5, nan]`` would be ``Invalid[]`` and a model's NaN row (flagged in the task
    tables' ``finite`` column) would make the whole table unloggable. The JSON keeps the NaN.
    """
    uniform = _uniform_representative(column)
    if uniform is not None:
        yield uniform[0]
        return
    seen: set[Any] = set()
    key: Any  # a hashable summary of the value's wandb type
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
            yield _nan_free(value) if kind in (list, tuple) and key[3] else value


def _nan_free(values: list[Any] | tuple[Any, ...]) -> list[Any] | tuple[Any, ...]:
    return type(values)(0.0 if type(v) is float and v != v else v for v in values)
