"""Staging media files straight into an artifact: :class:`Stager` and the manifest
entries it (and :class:`~fastevalcb.tables.references.MediaIndex`) makes."""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import stat
import threading
from typing import Any

import wandb
from wandb.sdk.artifacts.artifact_manifest_entry import ArtifactManifestEntry
from wandb.sdk.artifacts.staging import get_staging_dir
from wandb.sdk.lib.paths import LogicalPath

from fastevalcb.tables.media_objects import FileInfo


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
