"""Logging the data and pred-table artifacts and summary metrics; the run's lifetime."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import wandb

from fastevalcb.tables import _wandb
from fastevalcb.tables._wandb import release_pixels, release_table
from fastevalcb.tables.columnar import ColumnarTable
from fastevalcb.tables.references import DataTableLink, MediaIndex
from fastevalcb.tables.staging import EntryRows, add_json, add_staged, wandb_adds
from fastevalcb.tables.streamed import StreamedTable


def log_data_artifact(
    run: Any,
    table: wandb.Table,
    name: str,
    type: str,
    table_name: str,
    artifact: wandb.Artifact | None = None,
    index: MediaIndex | None = None,
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
    if index is None and _wandb.fast("entries"):
        index = MediaIndex.from_table(artifact, table)
    _scope_manifest(artifact)
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


def data_table_link(artifact: wandb.Artifact, table_name: str) -> DataTableLink | None:
    """Where ``table_name`` was logged in ``artifact`` (:func:`log_data_artifact`), for a pred
    table's column of its row indices to reference; None when the artifact has no such
    table entry, or without the "links" fast path (wandb's path copies the table)."""
    path = wandb.Table.with_suffix(table_name)
    entry = artifact.manifest.get_entry_by_path(path)
    if entry is None or not _wandb.fast("links"):
        return None
    return DataTableLink(_wandb.client_id(artifact), path, entry.digest)


def _scope_manifest(artifact: wandb.Artifact) -> None:
    """An artifact whose entries are rows hashes them in bulk and goes to wandb-core as
    wandb's manifest file when large (:func:`_wandb.scope_manifest`: this artifact only)."""
    entries = artifact.manifest.entries
    if isinstance(entries, EntryRows) and _wandb.fast("manifest"):
        _wandb.scope_manifest(artifact, entries.digest_lines)


def add_table(artifact: wandb.Artifact, table: wandb.Table, name: str) -> Any:
    """``artifact.add(table, name)``: every table of ours is written by one writer,
    :class:`StreamedTable`, straight into wandb's staging dir (a :class:`ColumnarTable` is
    streamed whole); without the "tables" fast path, wandb writes a ``wandb.Table`` of the
    same rows. Tables already added, referenced, or of a taken name, and other tables,
    go through ``Artifact.add``.
    """
    path = table.with_suffix(name)
    if path.startswith("media/tables") or wandb_adds(artifact, table, path):
        return artifact.add(table, name)  # renamed by its digest, added, referenced or taken
    if not isinstance(table, ColumnarTable):
        return add_json(artifact, table, name)
    if not _wandb.fast("tables"):  # wandb writes it
        if isinstance(table, StreamedTable):
            table.close()
        return artifact.add(table.as_wandb_table(), name)
    if isinstance(table, StreamedTable):
        if table.artifact is not artifact:
            raise ValueError(
                "a StreamedTable can only be added to the artifact it was serialized into"
            )
        streamed = table
    else:
        streamed = StreamedTable(
            table.columns, artifact, table.media_index, table.allow_mixed_types
        )
        if table.data:
            streamed.add_columns(dict(zip(table.columns, map(list, zip(*table.data)))))
    staged, digest = streamed.finish()  # written already, into wandb's staging dir
    return add_staged(artifact, table, path, staged, digest)


def _uncache(artifact: wandb.Artifact) -> None:
    """Drop a logged artifact's objects and its place in wandb's instance cache: cached, the
    data table stayed in memory for the whole fit and every pred version added a few KB per
    sample. We add no client-id reference through wandb (:class:`MediaIndex` and
    :func:`~fastevalcb.tables.references.add_link_references` write the entries; wandb-core
    resolves them from the records), and an object wandb added to it forgets it (a data
    table copied into a version by wandb's own path is copied again into the next, not
    referenced through this one: see :func:`_wandb.clear_added_objs`)."""
    try:
        if _wandb.keeps_own_files(artifact):  # wandb < 0.21 deletes its new_file()s with
            _wandb.clear_added_objs(artifact)  # the artifact: it stays cached
            return
        # What it holds must not be referenced through it once it is out of the cache.
        _wandb.clear_added_objs(artifact, release_targets=True)
        _wandb.cleanup_tmp_dir(artifact)
        _wandb.uncache(artifact)
    except (AttributeError, ImportError, KeyError, OSError, TypeError):
        return  # a wandb without these internals: the artifact stays cached (memory only)


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
    """``run.log(metrics)`` with no explicit step (see :func:`define_step_metrics`).

    wandb writes each table (a chart's too) into an artifact of its own whose temp dir is
    otherwise left to the garbage collector: it is removed here, once the file is staged."""
    run.log(dict(metrics))
    for value in metrics.values():
        try:
            artifact = _wandb.logged_table_artifact(value)
            if artifact is not None and not _wandb.keeps_own_files(artifact):
                _wandb.cleanup_tmp_dir(artifact)
        except (AttributeError, OSError, TypeError):
            continue  # a wandb without these internals: the collector removes it


def pred_artifact(
    run: Any, type: str = "evaluation", metadata: dict[str, Any] | None = None
) -> wandb.Artifact:
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
            raise ValueError(
                f"the streamed table's artifact is of type {artifact.type!r}, not {type!r}"
            )
        artifact.metadata = metadata
    else:
        artifact = pred_artifact(run, type, metadata)
        if media_index is not None:
            media_index.add_references(artifact, table)
            if isinstance(table, ColumnarTable):
                table.media_index = media_index
    add_table(artifact, table, table_name)
    _scope_manifest(artifact)
    run.log_artifact(artifact, aliases=aliases)
    release_table(table)
    _uncache(artifact)
    return artifact


# ---------------------------------------------------------------------------------
# The run's lifetime
# ---------------------------------------------------------------------------------
on_run_finish = _wandb.on_run_finish
run_finished = _wandb.run_finished
