"""Media references: a logged data table's files as arrays (:class:`MediaFiles`), a
batch of them as one column value (:class:`ImageColumn`; :class:`LayeredImages` with a
version's own mask and box layers on top), and the reference entries that pred versions
get instead of copies (:class:`MediaIndex`; :func:`add_link_references` for the data
table itself, which a column of its row indices links to).

About 700 lines: the three column types, the reference index and the table links share
one per-file array layout, and are changed together.
"""

from __future__ import annotations

import binascii
import itertools
import json
import re
import secrets
import string
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, overload

import numpy as np
import wandb
from wandb.data_types import Classes, Media

from fastevalcb.tables import _wandb
from fastevalcb.tables._wandb import (
    FileInfo,
    image_file_json,
    new_boxes2d,
    new_image,
    new_image_mask,
)
from fastevalcb.tables.staging import Stager, entry_rows, local_entry_name
from fastevalcb.tables.staging import local_paths as staging_local_paths

CLIENT_REF_SCHEME = "wandb-client-artifact"


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
        if isinstance(value, wandb.Image):
            for mask in _wandb.image_layers(value)[1].values():
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
        stager_prefix: the staging file names' common part (``<dir>/fastevalcb-<hex>/f-``).
        media_subdir, suffix: entry names are ``<media_subdir>/<md5 hex[:20]><suffix>``.
    """

    def __init__(
        self,
        media_subdir: str,
        suffix: str,
        stager_prefix: str,
        counter: np.ndarray,
        sha256: np.ndarray,
        md5: np.ndarray,
        size: np.ndarray,
        width: np.ndarray,
        height: np.ndarray,
    ) -> None:
        if any(json.dumps(part) != f'"{part}"' for part in (media_subdir, suffix)):
            raise ValueError(
                f"media folder and suffix must be plain text: got {media_subdir!r}, {suffix!r}"
            )
        self.media_subdir, self.suffix, self.stager_prefix = media_subdir, suffix, stager_prefix
        self.counter, self.sha256, self.md5 = counter, sha256, md5
        self.size, self.width, self.height = size, width, height
        self._md5 = np.ascontiguousarray(md5).data.cast("B")  # fast reads of a row
        self._row_of: np.ndarray | None = None  # counter - first counter -> row, when read

    @classmethod
    def of(
        cls, media: Sequence[Media], stager: Stager, media_subdir: str, suffix: str
    ) -> MediaFiles:
        """The files of ``media`` (one batch), which ``stager`` wrote."""
        n = len(media)
        infos = [info for info in map(_wandb.media_file, media) if info is not None]
        if len(infos) != n:
            raise ValueError(f"MediaFiles.of: {n - len(infos)} of the {n} media have no file")
        paths = [info.path for info in infos]
        staged = stager.files
        start = len(staged.prefix)
        numbers = [path[start:] for path in paths]
        if not all(
            path.startswith(staged.prefix) and number.isdigit()
            for path, number in zip(paths, numbers)
        ):
            raise ValueError(
                "MediaFiles.of: files not written by this Stager (media files "
                "of a task callback's data table are staged by "
                "fastevalcb.tables.Stager)"
            )
        counter = np.array(numbers, np.int64).reshape(n)
        files = cls(
            media_subdir,
            suffix,
            staged.prefix,
            counter=counter,
            sha256=np.frombuffer(
                bytes.fromhex("".join(info.sha256 for info in infos)), np.uint8
            ).reshape(n, 32),
            md5=np.frombuffer(staged.digests(counter.tolist()), np.uint8).reshape(n, 16),
            size=np.array([info.size for info in infos], np.int64).reshape(n),
            width=np.array([_width_height(m)[0] for m in media], np.int32).reshape(n),
            height=np.array([_width_height(m)[1] for m in media], np.int32).reshape(n),
        )
        for number, name in zip(counter.tolist(), files.entry_names(slice(0, n))):
            if staged.name(number) != name:
                raise ValueError(
                    f"{staged.local_path(number)} is staged as "
                    f"{staged.name(number)}, not as a {media_subdir}/*{suffix} "
                    "file"
                )
        return files

    @classmethod
    def concat(cls, parts: Sequence[MediaFiles]) -> MediaFiles:
        """One table's files from its batches' (same kind, same stager)."""
        first = parts[0]
        if any(
            (p.media_subdir, p.suffix, p.stager_prefix)
            != (first.media_subdir, first.suffix, first.stager_prefix)
            for p in parts
        ):
            raise ValueError("MediaFiles.concat: parts of different kinds or stagers")
        arrays = [
            np.concatenate([getattr(p, name) for p in parts])
            for name in ("counter", "sha256", "md5", "size", "width", "height")
        ]
        return cls(first.media_subdir, first.suffix, first.stager_prefix, *arrays)

    def __len__(self) -> int:
        return len(self.counter)

    def file(self, i: int) -> FileInfo:
        """``(staging path, sha256 hex, size)`` of row ``i``: a media object's file."""
        return FileInfo(
            f"{self.stager_prefix}{int(self.counter[i])}",
            self.sha256[i].tobytes().hex(),
            int(self.size[i]),
        )

    def entry_name(self, i: int) -> str:
        return f"{self.media_subdir}/{self._md5[16 * i : 16 * i + 10].hex()}{self.suffix}"

    def entry_names(self, rows: slice) -> list[str]:
        return [f"{self.media_subdir}/{h}{self.suffix}" for h in _hex_rows(self.md5[rows, :10])]

    def digest(self, i: int) -> str:
        return binascii.b2a_base64(self._md5[16 * i : 16 * i + 16], newline=False).decode()

    def row(self, path: str) -> int | None:
        """The row of a staging path, or None when it is not one of these files."""
        number = path[len(self.stager_prefix) :]
        if not path.startswith(self.stager_prefix) or not number.isdigit():
            return None
        row_of = self._rows_by_counter()
        slot = int(number) - self._first_counter
        if not 0 <= slot < len(row_of) or row_of[slot] < 0:
            return None
        return int(row_of[slot])

    def _rows_by_counter(self) -> np.ndarray:
        """Row of each Stager number from the first of these files' to the last (-1: not
        one of them). Built on first use and spanning only these files' numbers: a data
        table's batches each hold a :class:`MediaFiles` until they are concatenated."""
        if self._row_of is None:
            counter = self.counter
            self._first_counter = int(counter.min()) if len(counter) else 0
            row_of = np.full(
                int(counter.max()) + 1 - self._first_counter if len(counter) else 0, -1, np.int64
            )
            row_of[counter - self._first_counter] = np.arange(len(counter))
            self._row_of = row_of
        return self._row_of

    def name_of_path(self, path: str) -> str | None:
        """The entry name of a staging path, or None when it is not one of these files."""
        row = self.row(path)
        return None if row is None else self.entry_name(row)


def _hex_rows(arr: np.ndarray) -> list[str]:
    """Hex text of each row of a 2-D uint8 array."""
    width = 2 * arr.shape[1]
    text = np.ascontiguousarray(arr).tobytes().hex()
    return [text[i : i + width] for i in range(0, len(text), width)]


class ImageColumn(Sequence[wandb.Image]):
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

    def __init__(
        self,
        files: MediaFiles,
        rows: slice,
        masks: MediaFiles | None = None,
        mask_labels: dict[int, str] | None = None,
    ) -> None:
        if masks is not None and mask_labels is None:
            raise ValueError("ImageColumn: masks need mask_labels ({class_id: name})")
        self.files, self.rows, self.masks = files, rows, masks
        self.mask_labels: dict[int, str] = mask_labels or {}

    def __len__(self) -> int:
        return int(self.rows.stop - self.rows.start)

    @overload
    def __getitem__(self, i: int) -> wandb.Image: ...
    @overload
    def __getitem__(self, i: slice) -> list[wandb.Image]: ...
    def __getitem__(self, i: int | slice) -> wandb.Image | list[wandb.Image]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        row = self.rows.start + (i % len(self))
        files, layers = self.files, None
        if self.masks is not None:
            layers = {
                "ground_truth": new_image_mask(
                    "ground_truth", None, self.mask_labels, self.masks.file(row), keep_data=False
                )
            }
        return new_image(
            files.file(row), int(files.width[row]), int(files.height[row]), masks=layers
        )

    @property
    def plain(self) -> bool:
        return self.masks is None

    def type_sample(self) -> list[wandb.Image]:
        """What a table's type check reads of the column: its first image (all share a
        type; see :meth:`LayeredImages.type_sample`)."""
        return self[:1]

    def json_texts(self, names: list[str]) -> list[str]:
        """The JSON text of each image once its file is the artifact's entry ``names[i]``:
        ``json.dumps(image.to_json(artifact), sort_keys=True)`` (``MediaIndex.image_json``),
        written straight from the arrays."""
        rows = self.rows
        return [
            _IMAGE_JSON.format(h, name, sha, w)  # names need no JSON escaping
            for name, sha, w, h in zip(
                names,
                _hex_rows(self.files.sha256[rows]),
                self.files.width[rows].tolist(),
                self.files.height[rows].tolist(),
            )
        ]


_IMAGE_JSON = (
    '{{"_type": "image-file", "format": "png", "height": {}, "path": "{}", '
    '"sha256": "{}", "width": {}}}'
)


class LayeredImages(Sequence[wandb.Image]):
    """A pred batch's images with this version's layers: the data table's images (and
    their ground-truth mask layer) by reference, plus mask files staged into this
    version's artifact and box layers kept as JSON text.

    Like :class:`ImageColumn`, one value for a whole column of a :class:`StreamedTable`
    batch, serialized from its parts (no media object per row); read as a sequence, its
    items are the same images as ``wandb.Image`` objects.

    Args:
        base: the data table's images of this batch (``base.masks``, if any, is the
            ``"ground_truth"`` mask layer).
        class_labels: ``{class_id: name}`` of the new layers.
        masks: ``{layer: one staged mask file per row}`` (``(path, sha256 hex, size)``).
        boxes: ``{layer: one box_data JSONText per row}``
            (:func:`fastevalcb.media.boxes.box_data_json`).
    """

    def __init__(
        self,
        base: ImageColumn,
        class_labels: dict[int, str],
        masks: Mapping[str, Sequence[tuple[str, str, int]]] | None = None,
        boxes: Mapping[str, Sequence[Any]] | None = None,
    ) -> None:
        self.base, self.class_labels = base, class_labels
        self.masks, self.boxes = dict(masks or {}), dict(boxes or {})
        if base.masks is not None and "ground_truth" in self.masks:
            raise ValueError("masks: 'ground_truth' is the base images' own mask layer")
        if base.plain and not (self.masks or self.boxes):
            raise ValueError("LayeredImages needs a layer (plain images are an ImageColumn)")
        for kind, layers in (("masks", self.masks), ("boxes", self.boxes)):
            for key, layer in layers.items():
                if len(layer) != len(base):
                    raise ValueError(
                        f"{kind}[{key!r}] must have {len(base)} rows, got {len(layer)}"
                    )
        self._classes_cache: dict[tuple[tuple[int, str], ...], Classes] = {}

    def __len__(self) -> int:
        return len(self.base)

    @overload
    def __getitem__(self, i: int) -> wandb.Image: ...
    @overload
    def __getitem__(self, i: slice) -> list[wandb.Image]: ...
    def __getitem__(self, i: int | slice) -> wandb.Image | list[wandb.Image]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if not -len(self) <= i < len(self):
            raise IndexError(i)
        return self._row_image(i % len(self), _plain)

    def type_sample(self) -> list[wandb.Image]:
        """``self[:1]`` as wandb types it: the first image with each box layer cut to its
        first box. An image's wandb type reads its layers' class maps and the score keys of
        their boxes, which every box of a :class:`JSONText` layer shares (its
        ``score_keys``), not the boxes themselves: no batch's type check decodes all of a
        layer's boxes for wandb to read every box's score keys."""
        return [self._row_image(0, _first_box)] if len(self) else []

    def _row_image(self, i: int, box_data: Callable[[Any], Any]) -> wandb.Image:
        base, row = self.base, self.base.rows.start + i
        masks = {
            key: new_image_mask(key, None, self.class_labels, files[i], keep_data=False)
            for key, files in self.masks.items()
        }
        if base.masks is not None:
            masks["ground_truth"] = new_image_mask(
                "ground_truth", None, base.mask_labels, base.masks.file(row), keep_data=False
            )
        boxes = {
            key: new_boxes2d(key, box_data(data[i]), self.class_labels, None)
            for key, data in self.boxes.items()
        }
        return new_image(
            base.files.file(row),
            int(base.files.width[row]),
            int(base.files.height[row]),
            boxes,
            masks,
            classes_cache=self._classes_cache,
        )

    @property
    def classes(self) -> Classes | None:
        """The images' shared ``Classes`` (what each image's ``to_json`` adds)."""
        return _wandb.image_classes(self.type_sample()[0])

    def json_texts(
        self, names: list[str], mask_names: Mapping[str, list[str]], classes_json: dict[str, Any]
    ) -> list[str]:
        """Each image's ``json.dumps(image.to_json(artifact), sort_keys=True)`` once its
        files are the artifact's entries: the image's ``names[i]``, each mask layer's
        ``mask_names[layer][i]`` (``"ground_truth"`` included); ``classes_json`` is the
        class-set file's JSON. Written from the parts, a format string per batch."""
        base, rows = self.base, self.base.rows
        slots: list[list[Any]] = []  # per-row values; the template holds _SLOT markers

        def slot(values: list[Any], quote: bool = True) -> str:  # names, hex: no JSON escaping
            slots.append([f'"{v}"' for v in values] if quote else values)
            return _SLOT.format(len(slots) - 1)

        value: dict[str, Any] = {
            "_type": "image-file",
            "format": "png",
            "classes": classes_json,
            "path": slot(names),
            "sha256": slot(_hex_rows(base.files.sha256[rows])),
            "width": slot(base.files.width[rows].tolist(), quote=False),
            "height": slot(base.files.height[rows].tolist(), quote=False),
        }
        masks = {
            key: {
                "_type": _MASK_TYPE,
                "path": slot(mask_names[key]),
                "sha256": slot([file[1] for file in files]),
            }
            for key, files in self.masks.items()
        }
        if base.masks is not None:
            masks["ground_truth"] = {
                "_type": _MASK_TYPE,
                "path": slot(mask_names["ground_truth"]),
                "sha256": slot(_hex_rows(base.masks.sha256[rows])),
            }
        if masks:
            value["masks"] = masks
        if self.boxes:
            value["boxes"] = {
                key: slot(
                    [getattr(b, "text", None) or json.dumps(b, sort_keys=True) for b in data],
                    quote=False,
                )
                for key, data in self.boxes.items()
            }
        pieces = _SLOT_JSON.split(json.dumps(value, sort_keys=True))  # text, slot, text, ...
        fmt = "".join(
            "{" + p + "}" if k % 2 else p.replace("{", "{{").replace("}", "}}")
            for k, p in enumerate(pieces)
        )
        return [fmt.format(*row) for row in zip(*slots)]


_MASK_TYPE = _wandb.MASK_TYPE  # the "_type" an ImageMask's to_json writes
_SLOT = "\x00slot:{}\x00"
_SLOT_JSON = re.compile(r'"\\u0000slot:(\d+)\\u0000"')


class MediaIndex:
    """Which local media files are entries of a logged data artifact.

    Built once after the data table is added to its artifact; used for every
    pred-table version to turn those files into reference entries. Built from the table
    (:meth:`from_table`: a dict per file, for tables the caller keeps anyway) or from
    :class:`MediaFiles` arrays (:meth:`from_files`: the task callbacks, which keep no
    object per sample).
    """

    def __init__(
        self,
        artifact: wandb.Artifact,
        entry_by_local_path: dict[str, tuple[str, str]] | None = None,
        files: Sequence[MediaFiles] = (),
    ) -> None:
        self.artifact = artifact
        self._entry_by_local_path = entry_by_local_path or {}
        self._files = [f for f in files if f is not None]
        self._sources: dict[int, _References] = {}  # id(files) -> its reference rows

    @property
    def client_id(self) -> str:
        """The data artifact's client id, which its references name (fast path only)."""
        return _wandb.client_id(self.artifact)

    @classmethod
    def from_table(cls, artifact: wandb.Artifact, table: wandb.Table) -> MediaIndex:
        index: dict[str, tuple[str, str]] = {}
        for row in table.data:
            for cell in row:
                for media in media_files(cell):
                    path = _wandb.media_path(media)
                    if path is None:
                        continue
                    entry = _wandb.added_local_paths(artifact).get(path)
                    if entry is not None:
                        index[path] = (entry.path, entry.digest)
        return cls(artifact, index)

    @classmethod
    def from_files(cls, artifact: wandb.Artifact, files: Sequence[MediaFiles]) -> MediaIndex:
        return cls(artifact, files=files)

    def __len__(self) -> int:
        return len(self._entry_by_local_path) + sum(len(f) for f in self._files)

    def _lookup(self, media: Media) -> tuple[str, str] | tuple[MediaFiles, int] | None:
        """A media object's file in the data artifact: ``(entry name, digest)`` (tables'
        files), ``(MediaFiles, row)`` (staged files), or None."""
        path = _wandb.media_path(media)
        if path is None:
            return None
        found = self._entry_by_local_path.get(path)
        if found is not None or not self._files:
            return found
        for files in self._files:
            row = files.row(path)
            if row is not None:
                return files, row
        return None

    def entry_name(self, media: Media) -> str | None:
        found = self._lookup(media)
        if found is None or isinstance(found[0], str):
            return None if found is None else found[0]
        files, row = found
        return files.entry_name(row)

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
        if not _wandb.fast("entries"):
            return 0  # wandb's own serialization adds them, as copies
        added = 0
        entries = entry_rows(target)
        local_paths = staging_local_paths(target)
        cells = (
            itertools.chain.from_iterable(table.data) if isinstance(table, wandb.Table) else table
        )
        for cell in cells:
            if not isinstance(cell, Media):
                continue
            for media in media_files(cell):
                path = _wandb.media_path(media)
                if path is None or path in local_paths:
                    continue
                found = self._lookup(media)
                if found is None:
                    continue
                if isinstance(found[0], MediaFiles):  # a staged file: a row of its files
                    files, row = found
                    references = self._references(target, files)
                    name = files.entry_name(row)
                    if name not in entries:
                        entries.add_row(name, entries.base(references) + row)
                        added += 1
                    continue
                name, digest = found
                if name not in entries:
                    # What manifest.add_entry does, minus re-validating a path that
                    # is already a valid entry name of the data artifact.
                    entries[name] = self.reference_entry(name, digest)
                    added += 1
                local_paths[path] = entries[name]
        return added

    def add_column_references(
        self, target: wandb.Artifact, files: MediaFiles, rows: slice
    ) -> list[str]:
        """Reference entries of ``target`` for ``rows`` of a data table's ``files``, straight
        from the arrays (what :meth:`add_references` adds for the same media): a row each.

        Returns:
            The entry names, one per row.
        """
        names = files.entry_names(rows)
        if not _wandb.fast("entries"):  # wandb's public path: copies of the files
            for i, name in enumerate(names, rows.start):
                if target.manifest.get_entry_by_path(name) is None:
                    target.add_file(files.file(i).path, name=name, policy="mutable")
            return names
        entries = entry_rows(target)
        base = entries.base(self._references(target, files)) + rows.start
        add = entries.add_row
        for i, name in enumerate(names):
            add(name, base + i)
        return names

    def _references(self, target: wandb.Artifact, files: MediaFiles) -> _References:
        """``files`` as reference entries of ``target`` (one source per data-table kind,
        whose staging paths ``target``'s local paths resolve)."""
        references = self._sources.get(id(files))
        if references is None:
            references = self._sources[id(files)] = _References(files, self.client_id)
        staging_local_paths(target).add_resolver(files.stager_prefix, files.name_of_path)
        return references

    def reference_entry(self, entry_name: str, digest: str) -> Any:
        """A new manifest entry referencing ``entry_name`` (of ``digest``) of the data artifact.

        The entry ``target.add_reference(reference_uri(name), name)`` would add (what
        ``WBLocalArtifactHandler.store_path`` builds), without ``add_reference``'s per-call
        URI parsing and validation, which a table of many rows would pay once per row.
        """
        return _wandb.new_entry(entry_name, digest, 0, ref=self.reference_uri(entry_name))

    def image_json(self, image: wandb.Image, artifact: wandb.Artifact) -> dict[str, Any]:
        """``image.to_json(artifact)`` of a plain image whose file is already an entry of
        ``artifact`` (a reference to the data artifact), without wandb's per-image work."""
        path = _wandb.media_path(image)
        name = None if path is None else local_entry_name(artifact, path)
        if name is None:
            stock: dict[str, Any] = _wandb.json_helper(image, artifact)
            return stock
        return image_file_json(image, name)


class _References:
    """:class:`~fastevalcb.tables.staging.EntrySource`: a data table's staged files as
    reference entries of a pred version (``add_reference`` of their client URI)."""

    local_path_prefix = None
    json_keys: tuple[str, ...] | None = None  # see EntrySource

    def __init__(self, files: MediaFiles, client_id: str) -> None:
        self.files, self.client_id = files, client_id
        self.ref_prefix = f"{CLIENT_REF_SCHEME}://{client_id}/"

    def name(self, row: int) -> str:
        return self.files.entry_name(row)

    def digest(self, row: int) -> str:
        return self.files.digest(row)

    def size(self, row: int) -> int:
        return 0

    def ref(self, name: str) -> str:
        return self.ref_prefix + name

    def local_path(self, row: int) -> None:
        return None

    def md5s(self, rows: np.ndarray) -> bytes:
        md5: np.ndarray = self.files.md5[rows]
        return md5.tobytes()

    def sizes(self, rows: np.ndarray) -> np.ndarray:
        return np.zeros(len(rows), np.int64)


# ---------------------------------------------------------------------------------
# Links to the data table: columns of its row indices
# ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataTableLink:
    """Where a logged data table is, for a pred table whose cells are its row indices.

    wandb records a ``Table.get_index()`` value put in a pred table as a ``foreignIndex``
    column whose ``table`` is an entry of the pred artifact, ``media/tables/t_<id>.table.json``:
    a reference to the data artifact's table file when that table was logged in another
    artifact. This is what that entry needs.

    Attributes:
        client_id: the data artifact's client id (``wandb-client-artifact://<client_id>/``).
        path: the data table's entry, e.g. ``val_data.table.json``.
        digest: that entry's digest (a reference entry carries its target's).
    """

    client_id: str
    path: str
    digest: str

    @property
    def reference_uri(self) -> str:
        return f"{CLIENT_REF_SCHEME}://{self.client_id}/{self.path}"


_TABLE_ID_CHARS = string.ascii_lowercase + string.digits


def add_link_references(artifact: wandb.Artifact, type_map: Mapping[str | int, Any]) -> int:
    """Give ``artifact`` a reference entry for each table a column of row indices links to
    (a ``foreignIndex`` column type, ``type_map``: the table's column types) whose ``link``
    (:class:`DataTableLink`) says where it was logged, and make that entry what
    serializing the column type writes as its ``table``.

    What wandb records when the linked table was logged in another artifact still in its
    instance cache: ``media/tables/t_<8 random chars>.table.json`` (``_ForeignIndexType.
    to_json``) as ``add_reference`` of ``wandb-client-artifact://<client id>/<path>`` (size
    0, the data table entry's digest). wandb's own path would instead write a copy of the
    data table, its media and all, into every version: the data artifact is out of the
    cache once logged (see :func:`~fastevalcb.tables.artifacts.log_data_artifact`). A
    linked table without a link (not logged by fastevalcb) is left to wandb.

    Returns:
        The number of reference entries added.
    """
    added = 0
    for table in _wandb.linked_tables(type_map):
        link = getattr(table, "link", None)
        if not isinstance(link, DataTableLink) or _wandb.added_entry(artifact, table) is not None:
            continue
        token = "".join(secrets.choice(_TABLE_ID_CHARS) for _ in range(8))
        entry = _wandb.validated_entry(
            f"media/tables/t_{token}.table.json", link.digest, 0, ref=link.reference_uri
        )
        artifact.manifest.add_entry(entry)
        _wandb.set_added_entry(artifact, table, entry)
        added += 1
    return added


def _width_height(media: Media) -> tuple[int, int]:
    """An image's ``(width, height)``; ``(0, 0)`` for a mask."""
    return _wandb.image_size(media) if isinstance(media, wandb.Image) else (0, 0)


def _plain(box_data: Any) -> Any:
    """A box layer's ``box_data`` as a list (a ``JSONText`` layer decoded)."""
    decoded = getattr(box_data, "decoded", None)
    return decoded() if decoded is not None else box_data


def _first_box(box_data: Any) -> list[Any]:
    """A ``JSONText`` box layer's first box, as a list of at most one (decoded alone:
    ``[{...}, ...]``'s first element starts at index 1); any other layer whole (its boxes
    may differ in score keys)."""
    text = getattr(box_data, "text", None)
    if text is None:
        return list(box_data)
    if text == "[]":
        return []
    first, _ = _DECODER.raw_decode(text, 1)
    return [first]


_DECODER = json.JSONDecoder()
