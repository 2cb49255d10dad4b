"""Staging media files straight into an artifact (:class:`Stager`), and the manifest
entries that many files make, kept as rows (:class:`EntryRows`).

A little over 500 lines: the stager and the entry rows it fills share one layout of
manifest entries as arrays.
"""

from __future__ import annotations

import array
import binascii
import hashlib
import json
import os
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np
import wandb

from fastevalcb.tables import _wandb
from fastevalcb.tables._wandb import FileInfo, b64_digest, file_hasher


# ---------------------------------------------------------------------------------
# Entries as rows: one int per entry in the manifest, not an entry object
# ---------------------------------------------------------------------------------
class EntrySource(Protocol):
    """Where the fields of some of an artifact's entries are kept, one row per file."""

    def name(self, row: int) -> str: ...
    def digest(self, row: int) -> str: ...
    def size(self, row: int) -> int: ...
    def ref(self, name: str) -> str | None: ...  # of the row named ``name``
    def local_path(self, row: int) -> str | None: ...

    # The keys of the source's entries' JSON (the same for every row), learnt from the
    # first real entry by EntryView.to_json; None until then.
    json_keys: tuple[str, ...] | None

    def md5s(self, rows: np.ndarray) -> bytes: ...  # the rows' 16-byte entry digests (bulk)

    def sizes(self, rows: np.ndarray) -> np.ndarray: ...  # the rows' sizes (bulk)


_NO_EXTRA: MappingProxyType[str, Any] = MappingProxyType({})


class EntryView:
    """A manifest entry read from its row: the fields wandb reads when it logs an artifact
    (``_make_artifact_manifest``, its manifest file, the manifest's digest and size), the
    digest and size read in bulk for a chunk of rows (:meth:`EntryRows.items`); anything
    else is read from the ``ArtifactManifestEntry`` the row stands for, built on demand."""

    __slots__ = ("path", "digest", "size", "_source", "_row")
    birth_artifact_id = None
    skip_cache = False
    extra = _NO_EXTRA

    def __init__(
        self,
        path: str,
        source: EntrySource,
        row: int,
        digest: str | None = None,
        size: int | None = None,
    ) -> None:
        self.path, self._source, self._row = path, source, row
        self.digest = source.digest(row) if digest is None else digest
        self.size = source.size(row) if size is None else size

    ref = property(lambda self: self._source.ref(self.path))
    local_path = property(lambda self: self._source.local_path(self._row))

    def entry(self) -> Any:
        return _source_entry(self._source, self._row)

    def to_json(self) -> dict[str, Any]:
        """``entry().to_json()`` (what wandb writes its manifest file from) built from the
        row: the keys the real entry of this source's first view wrote, which are the
        same for every row of a source (wandb releases differ in which they write)."""
        source = self._source
        keys = source.json_keys
        if keys is None:
            real: dict[str, Any] = self.entry().to_json()
            source.json_keys = keys = (
                tuple(real)
                if set(real) <= set(_JSON_FIELDS) and real == self._json(tuple(real))
                else ()
            )
            return real
        if keys == _FILE_KEYS:  # a staged file: the common case, without getattr
            return {
                "path": self.path,
                "digest": self.digest,
                "size": self.size,
                "extra": {},
                "local_path": self.local_path,
                "skip_cache": False,
            }
        if keys == _REF_KEYS:  # a reference
            return {
                "path": self.path,
                "digest": self.digest,
                "ref": self.ref,
                "size": 0,
                "extra": {},
                "skip_cache": False,
            }
        return self._json(keys) if keys else self.entry().to_json()

    def _json(self, keys: tuple[str, ...]) -> dict[str, Any]:
        out = {key: getattr(self, _JSON_FIELDS[key]) for key in keys}
        if "extra" in out:
            out["extra"] = dict(out["extra"])
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.entry(), name)


_FILE_KEYS = ("path", "digest", "size", "extra", "local_path", "skip_cache")
_REF_KEYS = ("path", "digest", "ref", "size", "extra", "skip_cache")
_JSON_FIELDS = {
    "path": "path",
    "digest": "digest",
    "ref": "ref",
    "size": "size",
    "local_path": "local_path",
    "skip_cache": "skip_cache",
    "extra": "extra",
    "birth_artifact_id": "birth_artifact_id",
    "birthArtifactID": "birth_artifact_id",
}


class EntryRows(dict[str, Any]):
    """An artifact's ``manifest.entries`` (wandb-internal) whose entries of many files are
    rows of arrays: entry name -> an int (source and row) instead of an entry object.

    An :class:`ArtifactManifestEntry` with its pydantic bookkeeping is ~1.1 KB and three
    objects the garbage collector tracks; a 200k-image data table or pred version makes
    one per file. Here a file costs its name and an int (~150 bytes), and adds nothing
    for the collector to track: a version's entries no longer set off full collections.
    Single lookups (``[name]``, ``get``) build the real entry; iterating (``values``,
    ``items``: what wandb does when it logs the artifact) yields :class:`EntryView`
    objects; a logged manifest's digest is hashed from the rows in bulk. Any other value
    (an entry wandb adds itself) is kept as it is.
    """

    _SHIFT = 40
    _ROW = (1 << _SHIFT) - 1

    def __init__(self, entries: dict[str, Any] | None = None) -> None:
        super().__init__(entries or {})
        self._sources: list[EntrySource] = []
        self._base: dict[int, int] = {}  # id(source) -> its rows' first int

    def base(self, source: EntrySource) -> int:
        """The int of ``source``'s row 0 (rows are ``base + row``)."""
        found = self._base.get(id(source))
        if found is None:
            found = self._base[id(source)] = len(self._sources) << self._SHIFT
            self._sources.append(source)
        return found

    def add_row(self, name: str, value: int) -> None:
        """Make row ``value`` (``base(source) + row``) the entry ``name``, unless the
        artifact has an entry of that name already."""
        dict.setdefault(self, name, value)

    def _real(self, value: Any) -> Any:
        if type(value) is not int:
            return value
        return _source_entry(self._sources[value >> self._SHIFT], value & self._ROW)

    def __getitem__(self, name: str) -> Any:
        return self._real(dict.__getitem__(self, name))

    def get(self, name: str, default: Any = None) -> Any:
        value = dict.get(self, name, _MISSING)
        return default if value is _MISSING else self._real(value)

    def setdefault(self, name: str, default: Any = None) -> Any:
        return self._real(dict.setdefault(self, name, default))

    def pop(self, name: str, *default: Any) -> Any:
        return self._real(dict.pop(self, name, *default))

    # values/items: iterators, not dict views (wandb iterates them once, when it logs)
    def values(self) -> Iterator[Any]:  # type: ignore[override]
        return (view for _, view in self.items())

    def items(self, chunk: int = 4096) -> Iterator[tuple[str, Any]]:  # type: ignore[override]
        """``(name, entry)`` in order: entry objects as they are, rows as
        :class:`EntryView` objects whose digests and sizes are read ``chunk`` rows at a
        time."""
        for source, names, rows, value in self._runs():
            if source is None:
                yield names[0], value
                continue
            for start in range(0, len(names), chunk):
                part = rows[start : start + chunk]
                digests = b64_rows(source.md5s(part))
                sizes = source.sizes(part).tolist()
                for name, row, digest, size in zip(
                    names[start : start + chunk], part.tolist(), digests, sizes
                ):
                    yield name, EntryView(name, source, row, digest, size)

    def copy(self) -> dict[str, Any]:
        return {name: self[name] for name in self}

    def digest_lines(self, chunk: int = 4096) -> Iterator[str]:
        """What the manifest's digest hashes after its header, ``chunk`` entries at a time:
        ``f"{name}:{digest}\n"`` of every entry, sorted by name
        (``ArtifactManifestV1.digest``, wandb-internal)."""
        names: list[str] = []
        digests: list[str] = []
        for source, run_names, rows, value in self._runs():
            names += run_names
            if source is None:
                digests.append(value.digest)
            else:
                for start in range(0, len(rows), chunk):
                    digests += b64_rows(source.md5s(rows[start : start + chunk]))
        order = sorted(range(len(names)), key=names.__getitem__)
        for start in range(0, len(order), chunk):
            yield "".join(f"{names[i]}:{digests[i]}\n" for i in order[start : start + chunk])

    def _runs(self) -> Iterator[tuple[Any, list[str], Any, Any]]:
        """The entries in order, in runs: ``(source, names, rows, None)`` for consecutive
        rows of one source, ``(None, [name], None, entry)`` for an entry object."""
        names, values = list(dict.keys(self)), list(dict.values(self))
        codes = np.fromiter((v if type(v) is int else -1 for v in values), np.int64, len(values))
        source = np.where(codes >= 0, codes >> self._SHIFT, -1)
        cuts = np.flatnonzero((source[1:] != source[:-1]) | (source[1:] < 0)) + 1
        bounds = [0, *cuts.tolist(), len(values)]
        for start, end in zip(bounds[:-1], bounds[1:]):
            if source[start] < 0:  # an entry object: a run of its own
                yield None, names[start:end], None, values[start]
            elif end > start:
                yield (
                    self._sources[int(source[start])],
                    names[start:end],
                    codes[start:end] & self._ROW,
                    None,
                )


def b64_rows(md5s: bytes) -> list[str]:
    """The base64 entry digest (wandb's form) of each 16 bytes of ``md5s``, in one pass:
    each row padded to 18 bytes encodes alone (18 = 6 x 3), its last 2 characters made
    the ``==`` padding a 16-byte encoding ends with."""
    n = len(md5s) // 16
    padded = np.zeros((n, 18), np.uint8)
    padded[:, :16] = np.frombuffer(md5s, np.uint8).reshape(n, 16)
    text = (
        np.frombuffer(binascii.b2a_base64(padded.tobytes(), newline=False), np.uint8)
        .reshape(n, 24)
        .copy()
    )
    text[:, 22:] = ord("=")
    flat = text.tobytes().decode("ascii")
    return [flat[i : i + 24] for i in range(0, 24 * n, 24)]


# The entry name of a staged file's path, or None (a set of files' ``name_of_path``).
Resolver = Callable[[str], str | None]


class LocalPaths(dict[str, Any]):
    """An artifact's ``_added_local_paths`` (wandb-internal: local file -> its entry) that
    also finds the files of :class:`EntryRows` sources by their path, without a key per
    file: a ``resolver`` maps a path under its prefix to an entry name, which is the
    path's entry when the artifact has it."""

    def __init__(self, paths: dict[str, Any], entries: EntryRows) -> None:
        super().__init__(paths)
        self.entries = entries
        # one per set of files: (prefix, id of the files) -> (prefix, resolver)
        self._resolvers: dict[tuple[str, int], tuple[str, Resolver]] = {}

    def add_resolver(self, prefix: str, resolver: Resolver) -> None:
        """``resolver(path)``: the entry name of a file under ``prefix`` (a staging folder)
        of one set of files, or None. A set's resolver is added once (several sets, such
        as a data table's images and masks, can share a folder)."""
        files = getattr(resolver, "__self__", resolver)  # a bound method: its set of files
        self._resolvers.setdefault((prefix, id(files)), (prefix, resolver))

    def entry_name(self, path: str) -> str | None:
        """The name of the entry for the local file ``path``, or None."""
        entry = dict.get(self, path)
        if entry is not None:
            entry_path: str = entry.path
            return entry_path
        for prefix, resolver in self._resolvers.values():
            if path.startswith(prefix):
                name = resolver(path)
                if name is not None and dict.__contains__(self.entries, name):
                    return name
        return None

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.entry_name(path) is not None

    def get(self, path: str, default: Any = None) -> Any:
        entry = dict.get(self, path)
        if entry is not None:
            return entry
        name = self.entry_name(path)
        return default if name is None else self.entries[name]

    def __getitem__(self, path: str) -> Any:
        entry = self.get(path)
        if entry is None:
            raise KeyError(path)
        return entry


def entry_rows(artifact: wandb.Artifact) -> EntryRows:
    """The artifact's entries as :class:`EntryRows` (its manifest's and
    ``_added_local_paths`` dicts replaced, with what they held, the first time)."""
    manifest = artifact.manifest
    entries = manifest.entries
    if not isinstance(entries, EntryRows):
        entries = EntryRows(entries)
        _wandb.replace_entries(artifact, entries)
        _wandb.set_added_local_paths(
            artifact, LocalPaths(_wandb.added_local_paths(artifact), entries)
        )
    return entries


def local_entry_name(artifact: wandb.Artifact, path: str) -> str | None:
    """The entry name of a local file added to ``artifact`` (``get_added_local_path_name``,
    without building an entry for a row)."""
    paths = _wandb.added_local_paths(artifact)
    if isinstance(paths, LocalPaths):
        return paths.entry_name(path)
    return artifact.get_added_local_path_name(path)


def local_paths(artifact: wandb.Artifact) -> LocalPaths:
    """The artifact's local paths as :class:`LocalPaths` (made by :func:`entry_rows`)."""
    paths = _wandb.added_local_paths(artifact)
    if not isinstance(paths, LocalPaths):
        raise TypeError("the artifact's local paths are not LocalPaths: call entry_rows first")
    return paths


def _source_entry(source: EntrySource, row: int) -> Any:
    name = source.name(row)
    return _wandb.new_entry(
        name,
        source.digest(row),
        source.size(row),
        local_path=source.local_path(row),
        ref=source.ref(name),
    )


_MISSING = object()


# ---------------------------------------------------------------------------------
# Staging media files straight into an artifact
# ---------------------------------------------------------------------------------
class Stager:
    """Writes media files once, straight into wandb's artifact staging directory.

    ``artifact.add(table)`` would, per media file of the table, copy the temp file into
    the staging directory, read it again for its md5 and validate a new manifest entry
    (``Artifact.add_file(path, name, is_tmp=True)``). Here the encoder thread writes the
    PNG bytes to their staging file directly, with both digests computed from the bytes
    in memory, and the file becomes the entry ``add_file`` would have made (same name,
    digest, size, read-only staging copy), kept as a row of :attr:`files`
    (:class:`EntryRows`), so serializing the table finds every file already added and
    copies nothing. Without the "entries" fast path (:func:`_wandb.fast`), each file is
    given to ``Artifact.add_file`` as it is written: wandb hashes it and makes the entry.

    Thread-safe: encoder threads call :meth:`write` concurrently.

    Args:
        artifact: the artifact the files become entries of (before it is logged).
    """

    def __init__(self, artifact: wandb.Artifact) -> None:
        self.artifact = artifact
        # A folder of its own in the staging dir: creating files in a small folder is
        # faster than among the staging dir's many, and threads contend less.
        directory = os.path.join(_wandb.staging_dir(), f"fastevalcb-{os.urandom(6).hex()}")
        os.makedirs(directory)
        self.directory = directory
        self.files = StagedFiles(f"{directory}/f-")
        self._lock = threading.Lock()
        self._hasher = file_hasher(artifact)  # a fresh one, copied per file
        self.rows = _wandb.fast("entries")
        if self.rows:
            self._entries = entry_rows(artifact)
            self._base = self._entries.base(self.files)
            local_paths(artifact).add_resolver(self.files.prefix, self.files.name_of_path)

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
        hasher = self._hasher.copy()
        hasher.update(data)
        digest = hasher.digest()
        sha256 = hashlib.sha256(data).hexdigest()
        files = self.files
        with self._lock:
            n = files.append(digest, len(data), (media_subdir, suffix))
        path = files.local_path(n)
        # Created read-only, as add_file leaves its staging copy (one syscall, no chmod).
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        with self._lock:  # the first file of a name is its entry
            if self.rows:
                self._entries.add_row(files.name(n), self._base + n)
            elif self.artifact.manifest.get_entry_by_path(files.name(n)) is None:
                self.artifact.add_file(path, name=files.name(n), policy="immutable")
        return FileInfo(path, sha256, len(data))

    def discard(self) -> None:
        """Delete every file written, for an artifact that will not be logged (a version a
        full disk refused: its files are the space a retry needs). A staged file becomes an
        entry only when the artifact is logged, after its last byte: a write cut short (a
        kill, a full disk) leaves a file no manifest names, never a truncated entry."""
        shutil.rmtree(self.directory, ignore_errors=True)


class StagedFiles:
    """:class:`EntrySource`: the files a :class:`Stager` wrote, one row per file (its entry
    digest, size and kind in arrays: ~25 bytes a file). File ``n`` is ``prefix + str(n)``.
    """

    json_keys: tuple[str, ...] | None = None  # see EntrySource

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._digests = bytearray()  # 16 bytes per file: the entry digest
        self._sizes = array.array("q")
        self._kinds = array.array("B")  # per file: index into _kind_names
        self._kind_names: list[tuple[str, str]] = []  # (media_subdir, suffix)

    def append(self, digest: bytes, size: int, kind: tuple[str, str]) -> int:
        """Add a file's row (not thread-safe: the Stager locks); returns its number."""
        if kind not in self._kind_names:
            self._kind_names.append(kind)
        self._digests += digest
        self._sizes.append(size)
        self._kinds.append(self._kind_names.index(kind))
        return len(self._sizes) - 1

    def __len__(self) -> int:
        return len(self._sizes)

    def name(self, n: int) -> str:
        subdir, suffix = self._kind_names[self._kinds[n]]
        return f"{subdir}/{self._digests[16 * n : 16 * n + 10].hex()}{suffix}"

    def digest(self, n: int) -> str:
        return binascii.b2a_base64(self._digests[16 * n : 16 * n + 16], newline=False).decode()

    def digests(self, numbers: Any) -> bytes:
        """The 16-byte entry digests of files ``numbers``, concatenated."""
        view = memoryview(self._digests)
        return b"".join(view[16 * n : 16 * n + 16] for n in numbers)

    def size(self, n: int) -> int:
        return self._sizes[n]

    def ref(self, name: str) -> None:
        return None

    def local_path(self, n: int) -> str:
        return f"{self.prefix}{n}"

    def md5s(self, rows: np.ndarray) -> bytes:
        return self.digests(rows.tolist())

    def sizes(self, rows: np.ndarray) -> np.ndarray:
        sizes = self._sizes  # a row at a time: no copy of every file's size per chunk
        return np.array([sizes[n] for n in rows.tolist()], np.int64)

    def name_of_path(self, path: str) -> str | None:
        """The entry name of a staging path of these files, or None."""
        number = path[len(self.prefix) :]
        if not path.startswith(self.prefix) or not number.isdigit() or int(number) >= len(self):
            return None
        return self.name(int(number))


def add_json(artifact: wandb.Artifact, obj: Any, name: str, text: str | None = None) -> Any:
    """``artifact.add(obj, name)`` for a value that is one JSON file (a class set, a table).

    ``Artifact.add`` writes ``json.dump(obj.to_json(artifact), f, sort_keys=True)`` through
    ``new_file``: a temp folder of the artifact's own, an ``fsync`` (with the version's
    image files just written, it waits for them to reach the disk: tens of ms per version),
    then a staging copy read back for its digest. Here the same text (``json.dumps`` writes
    what ``json.dump`` does, at C speed; or ``text``, already serialized) is written once
    straight into wandb's staging dir, hashed from memory, and added as that copy
    ("immutable"), with ``Artifact.add``'s bookkeeping. Without the "entries" fast path:
    ``Artifact.add`` itself.

    Returns:
        The manifest entry. Objects added already, or logged in another artifact (a
        reference), and paths taken go as in ``Artifact.add``.
    """
    path = obj.with_suffix(name)
    if not _wandb.fast("entries") or wandb_adds(artifact, obj, path):
        return artifact.add(obj, name)
    if text is None:
        text = json.dumps(obj.to_json(artifact), sort_keys=True)
    data, hasher = text.encode("utf-8"), file_hasher(artifact)
    hasher.update(data)
    staged = os.path.join(
        _wandb.staging_dir(), f"fastevalcb-{os.urandom(6).hex()}-{os.path.basename(path)}"
    )
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return add_staged(artifact, obj, path, staged, b64_digest(hasher))


def add_staged(artifact: wandb.Artifact, obj: Any, path: str, staged: str, digest: str) -> Any:
    """Add ``obj``'s file ``staged`` (already written into wandb's staging dir, of entry
    digest ``digest``) as the entry ``path``: as ``Artifact.add(obj, path)`` records it
    (:func:`_wandb.add_staged`), or, without the "entries" fast path, through
    ``Artifact.add_file`` (which hashes it again)."""
    if _wandb.fast("entries"):
        return _wandb.add_staged(artifact, obj, path, staged, digest)
    return artifact.add_file(staged, name=path, policy="immutable")


wandb_adds = _wandb.wandb_adds
