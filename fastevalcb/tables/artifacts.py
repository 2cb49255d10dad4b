"""Logging the data and pred-table artifacts and summary metrics; the run's lifetime."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import wandb
from wandb.sdk.artifacts.artifact_manifests.artifact_manifest_v1 import ArtifactManifestV1
from wandb.sdk.artifacts.staging import get_staging_dir
from wandb.sdk.interface import interface as _interface

from fastevalcb.tables.columnar import ColumnarTable, _FRAGMENT_JSON, _gc_paused
from fastevalcb.tables.media_objects import release_pixels
from fastevalcb.tables.references import MediaIndex
from fastevalcb.tables.staging import EntryRows, add_json, add_staged, wandb_adds
from fastevalcb.tables.streamed import StreamedTable


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
        with _gc_paused(), manifest_as_file():  # see log_pred_artifact
            run.log_artifact(artifact)
    else:
        with _gc_paused(), manifest_as_file():
            run.use_artifact(artifact)
        artifact.wait()
    for row in table.data:
        for cell in row:
            release_pixels(cell)
    release_table(table)
    _uncache(artifact)
    return index


MANIFEST_FILE_ENTRIES = 1_000
"""Manifests of more entries are sent the way wandb sends those of more than 100,000: as
its manifest file, which :class:`EntryRows` write in bulk (~1 µs an entry, where the
protobuf record costs ~4 and ~1.8 KB of transient memory)."""

_manifest_lock = threading.Lock()
_manifest_users = 0
_wandb_manifest = {}  # what manifest_as_file replaces while it runs: wandb's own


@contextlib.contextmanager
def manifest_as_file() -> Iterator[None]:
    """While ``log_artifact`` runs, a manifest of more than :data:`MANIFEST_FILE_ENTRIES`
    entries goes to wandb-core as wandb's own manifest file (gzip'd JSON lines in the
    staging directory, ``ArtifactManifest.manifest_file_path``), not as one protobuf record;
    and the manifests whose entries are rows (:class:`EntryRows`) are written and hashed in
    bulk.

    The record is built whole (every entry's message, then its serialized bytes, then the
    send) and costs ~1.1 KB per data-table sample and ~1.8 KB per pred-version row of
    transient memory: the peak RSS of a large validation set. wandb switches to the file
    above ``interface.MANIFEST_FILE_SIZE_THRESHOLD`` (100,000 entries), read as the
    threshold at call time; this lowers it while our artifacts are logged (other threads'
    artifacts logged meanwhile may take the file too: wandb's path either way), and puts it
    back after the last such call. wandb writes that file and the manifest's digest an
    entry at a time (pydantic dumps, an f-string per entry: ~20 µs an entry, most of a
    classification version's cost); for :class:`EntryRows` the same text comes from the
    rows' arrays (:meth:`EntryRows.manifest_lines`, :meth:`EntryRows.digest_lines`),
    other manifests go to wandb's own code. wandb-internal, all three; canaries in
    ``tests/test_tables.py``.
    """
    global _manifest_users
    with _manifest_lock:
        if _manifest_users == 0:
            _wandb_manifest.update(
                threshold=_interface.MANIFEST_FILE_SIZE_THRESHOLD,
                write=_interface.InterfaceBase._write_artifact_manifest_file,
                digest=ArtifactManifestV1.digest)
            _interface.MANIFEST_FILE_SIZE_THRESHOLD = min(_wandb_manifest["threshold"],
                                                          MANIFEST_FILE_ENTRIES)
            _interface.InterfaceBase._write_artifact_manifest_file = _write_manifest_file
            ArtifactManifestV1.digest = _manifest_digest
        _manifest_users += 1
    try:
        yield
    finally:
        with _manifest_lock:
            _manifest_users -= 1
            if _manifest_users == 0:
                _interface.MANIFEST_FILE_SIZE_THRESHOLD = _wandb_manifest["threshold"]
                _interface.InterfaceBase._write_artifact_manifest_file = _wandb_manifest["write"]
                ArtifactManifestV1.digest = _wandb_manifest["digest"]


def _write_manifest_file(interface: Any, manifest: Any) -> str:
    """``InterfaceBase._write_artifact_manifest_file``: the same file, named as wandb names
    it, its lines from :meth:`EntryRows.manifest_lines` in wandb's JSON (its interface
    module's ``json``: pydantic-core, orjson or the stdlib, by release), compressed as
    it goes."""
    if not isinstance(manifest.entries, EntryRows):
        return _wandb_manifest["write"](interface, manifest)
    directory = os.path.join(get_staging_dir(), "artifact_manifests")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory,
                        f"{time.time()}_{os.urandom(8).hex()}.manifest_contents.jl.gz")
    with gzip.open(path, "wb", compresslevel=1) as f:
        for text in manifest.entries.manifest_lines(_interface.json.dumps):
            f.write(text.encode("utf-8"))
    return path


def _manifest_digest(manifest: Any) -> str:
    """``ArtifactManifestV1.digest``: the hash of its header and the entries' sorted
    ``name:digest`` lines (md5, or xxh128 where the manifest uses it), a chunk at a time."""
    if not isinstance(manifest.entries, EntryRows):
        return _wandb_manifest["digest"](manifest)
    header = getattr(manifest, "_DIGEST_HEADER", b"wandb-artifact-manifest-v1\n")
    if "XXH128" in str(getattr(manifest, "digest_algorithm", "")):
        from wandb.sdk.lib.hashutil import _xxh128
        hasher = _xxh128(header)
    else:
        hasher = hashlib.md5(header, usedforsecurity=False)
    for text in manifest.entries.digest_lines():
        hasher.update(text.encode("utf-8"))
    return hasher.hexdigest()


def add_table(artifact: wandb.Artifact, table: wandb.Table, name: str) -> Any:
    """``artifact.add(table, name)``, writing the JSON with the C encoder.

    ``Artifact.add`` writes with ``json.dump``, which always takes the pure-Python
    encoder path (~1 s per 10k-row table); ``json.dumps`` with the same options writes
    the same text. :class:`JSONText` box layers are spliced in as they are. Tables
    already added go through ``Artifact.add``.
    """
    path = table.with_suffix(name)
    if path.startswith("media/tables") or wandb_adds(artifact, table, path):
        return artifact.add(table, name)  # renamed by its digest, added, referenced or taken
    if isinstance(table, StreamedTable):
        if table.artifact is not artifact:
            raise ValueError("a StreamedTable can only be added to the artifact it was "
                             "serialized into")
        staged, digest = table.finish()  # written already, into wandb's staging dir
        return add_staged(artifact, table, path, staged, digest)
    if isinstance(table, ColumnarTable):
        fragments: list[str] = []
        with _gc_paused():
            text = json.dumps(table.to_json(artifact, fragments), sort_keys=True)
        if fragments:
            text = _FRAGMENT_JSON.sub(lambda m: fragments[int(m.group(1))], text)
        return add_json(artifact, table, name, text)
    return add_json(artifact, table, name)


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
    # wandb builds the manifest record from a view per entry, all alive at once: with the
    # collector on, they set off full collections of the whole heap (TF, Keras, numba).
    with _gc_paused(), manifest_as_file():
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
