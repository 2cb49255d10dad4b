"""Read an offline W&B run without the W&B server: artifacts, manifests, tables, history.

An offline run directory (``wandb/offline-run-<time>-<id>/``) holds ``run-<id>.wandb``,
a transaction log of ``wandb.proto.wandb_internal_pb2.Record`` messages in LevelDB log
framing: a 7-byte file header (``:W&B``, magic ``0xBEE1``, version), then 32 KiB blocks
of chunks, each ``crc32 (4, little endian) | length (2) | type (1) | payload`` where type
is FULL, FIRST, MIDDLE or LAST and the CRC is zlib's crc32 over type byte + payload.

Artifacts appear as ``Record.artifact`` entries; their manifests list each file with
its digest, its staged local copy (``local_path``) and, for references, ``ref`` (a large
manifest is a file the record names, ``manifest_file_path``: gzip'd JSON, one entry a line,
in wandb's staging directory, where ``wandb sync`` reads it too).

Example:
    >>> run = OfflineRun.latest("wandb")
    >>> [a.qualified_name for a in run.artifacts()]
    ['val:v0', 'run_abc_pred:v0', 'run_abc_pred:v1']
    >>> table = run.load_table(run.artifact("run_abc_pred"), "eval_data")
    >>> table.columns, table.rows[0]
"""

from __future__ import annotations

import gzip
import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from fastevalcb.tables._wandb import record_class

_HEADER = b":W&B\xe1\xbe\x00"
_BLOCK = 32 * 1024
_CHUNK_HEADER = struct.Struct("<IHB")
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


class OfflineRunError(ValueError):
    """The path is not a readable offline run, or an artifact/table is missing."""


def read_records(path: str | Path) -> Iterator[Any]:
    """Yield every record of a ``.wandb`` transaction log, in order.

    A torn chunk at the very end (a run still writing, or killed) ends the stream;
    a checksum mismatch elsewhere raises ``OfflineRunError``.
    """
    buf = Path(path).read_bytes()
    if len(buf) < len(_HEADER):
        return  # nothing written yet (wandb < 0.21 may open the log before writing to it)
    if not buf.startswith(_HEADER[:4]):
        raise OfflineRunError(f"{path} is not a W&B transaction log (header {buf[:7]!r})")
    pos, pending = len(_HEADER), b""
    while pos < len(buf):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _CHUNK_HEADER.size:
            pos += left_in_block
            continue
        if pos + _CHUNK_HEADER.size > len(buf):
            return
        crc, length, kind = _CHUNK_HEADER.unpack_from(buf, pos)
        start = pos + _CHUNK_HEADER.size
        payload = buf[start : start + length]
        pos = start + length
        if len(payload) < length:
            return  # torn tail
        if kind == 0 and length == 0:
            continue  # zero padding
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            raise OfflineRunError(f"{path}: checksum mismatch in chunk at byte {start - 7}")
        if kind == _FULL:
            yield _parse(payload)
        elif kind == _FIRST:
            pending = payload
        elif kind == _MIDDLE:
            pending += payload
        elif kind == _LAST:
            yield _parse(pending + payload)
            pending = b""
        else:
            raise OfflineRunError(f"{path}: unknown chunk type {kind} at byte {start - 7}")


def _parse(payload: bytes) -> Any:
    record = record_class()()
    record.ParseFromString(payload)
    return record


@dataclass(frozen=True)
class ManifestEntry:
    """One file of an artifact: stored (``local_path``) or a reference (``ref``)."""

    path: str
    digest: str
    size: int
    ref: str | None = None
    local_path: str | None = None

    @property
    def is_reference(self) -> bool:
        return bool(self.ref)

    @property
    def referenced_client_id(self) -> str | None:
        """Client id of the artifact a ``wandb-client-artifact://`` reference points at."""
        if not self.ref:
            return None
        parsed = urlparse(self.ref)
        return parsed.netloc if parsed.scheme == "wandb-client-artifact" else None

    @property
    def referenced_path(self) -> str | None:
        return urlparse(self.ref).path.lstrip("/") if self.ref else None


@dataclass(frozen=True)
class LoggedArtifact:
    """An artifact version as the offline run recorded it."""

    name: str
    type: str
    version: int
    aliases: tuple[str, ...]
    metadata: dict[str, Any]
    client_id: str
    sequence_client_id: str
    digest: str
    entries: dict[str, ManifestEntry] = field(repr=False)

    @property
    def qualified_name(self) -> str:
        return f"{self.name}:v{self.version}"

    def stored_bytes(self) -> int:
        """Bytes of the files this version stores itself (references excluded)."""
        return sum(e.size for e in self.entries.values() if not e.is_reference)


@dataclass(frozen=True)
class LoggedTable:
    """A table read back from an artifact: columns, rows and wandb's column types."""

    columns: list[str]
    rows: list[list[Any]]
    column_types: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    def column(self, name: str) -> list[Any]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]


class OfflineRun:
    """An offline run directory (or its ``.wandb`` file), read without the server."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if path.is_dir():
            logs = sorted(path.glob("run-*.wandb"))
            if not logs:
                raise OfflineRunError(f"no run-*.wandb transaction log in {path}")
            path = logs[0]
        if not path.is_file():
            raise OfflineRunError(f"{path} does not exist")
        self.wandb_file = path
        self.run_dir = path.parent
        self._records: list[Any] | None = None

    @classmethod
    def latest(cls, wandb_dir: str | Path) -> OfflineRun:
        """The most recent offline run under a ``wandb/`` folder (or its parent)."""
        return cls(find_runs(wandb_dir)[-1])

    @property
    def complete(self) -> bool:
        """Whether the log ends with the run's exit record (the writer is done)."""
        return any(record.HasField("exit") for record in self.records)

    def wait_complete(self, timeout: float = 60.0) -> OfflineRun:
        """Re-read until the exit record is on disk.

        ``run.finish()`` can return before wandb-core has flushed the log's tail,
        so a reader started right after it may see a prefix of the records.
        """
        deadline = time.monotonic() + timeout
        while not self.complete:
            if time.monotonic() > deadline:
                raise OfflineRunError(f"{self.wandb_file} has no exit record after {timeout}s")
            time.sleep(0.1)
            self._records = None
        return self

    @property
    def records(self) -> list[Any]:
        if self._records is None:
            self._records = list(read_records(self.wandb_file))
        return self._records

    @property
    def run_id(self) -> str:
        for record in self.records:
            if record.HasField("run"):
                return str(record.run.run_id)
        raise OfflineRunError(f"{self.wandb_file} has no run record")

    def artifacts(self, name: str | None = None, type: str | None = None) -> list[LoggedArtifact]:
        """Every logged artifact version in log order; versions count per name from 0."""
        versions: dict[str, int] = {}
        found = []
        for record in self.records:
            if not record.HasField("artifact"):
                continue
            art = record.artifact
            version = versions.get(art.name, 0)
            versions[art.name] = version + 1
            if (name is None or art.name == name) and (type is None or art.type == type):
                found.append(_logged_artifact(art, version))
        return found

    def artifact(self, name: str, version: str | int = "latest") -> LoggedArtifact:
        """One artifact version by name and ``"latest"``, an alias, ``"vN"`` or ``N``."""
        candidates = self.artifacts(name)
        if not candidates:
            known = sorted({a.name for a in self.artifacts()})
            raise OfflineRunError(f"no artifact named {name!r} in this run; logged: {known}")
        if version == "latest":
            return candidates[-1]
        for art in candidates:
            if version in (art.version, f"v{art.version}") or version in art.aliases:
                return art
        raise OfflineRunError(
            f"artifact {name!r} has no version {version!r}; "
            f"versions: {[(a.qualified_name, a.aliases) for a in candidates]}"
        )

    def by_client_id(self, client_id: str) -> LoggedArtifact:
        for art in self.artifacts():
            if art.client_id == client_id:
                return art
        raise OfflineRunError(f"no artifact with client id {client_id[:12]}... in this run")

    def resolve(self, artifact: LoggedArtifact, path: str) -> tuple[LoggedArtifact, ManifestEntry]:
        """Follow client-id references until the entry that stores the file."""
        entry = artifact.entries[path]
        while (client_id := entry.referenced_client_id) is not None:
            artifact = self.by_client_id(client_id)
            referenced_path = entry.referenced_path
            assert referenced_path is not None  # a client-id reference always has a path
            entry = artifact.entries[referenced_path]
        return artifact, entry

    def read_json(self, artifact: LoggedArtifact, path: str) -> Any:
        _, entry = self.resolve(artifact, path)
        if not entry.local_path or not Path(entry.local_path).is_file():
            raise OfflineRunError(
                f"{artifact.qualified_name}/{path}: staged file {entry.local_path!r} is gone "
                "(was the run synced and its staging area cleaned?)"
            )
        return json.loads(Path(entry.local_path).read_text())

    def load_table(self, artifact: LoggedArtifact | str, table_name: str) -> LoggedTable:
        """Columns and rows of a table logged in an artifact (name or LoggedArtifact)."""
        if isinstance(artifact, str):
            artifact = self.artifact(artifact)
        path = table_name if table_name.endswith(".table.json") else f"{table_name}.table.json"
        if path not in artifact.entries:
            tables = [p for p in artifact.entries if p.endswith(".table.json")]
            raise OfflineRunError(f"{artifact.qualified_name} has no {path}; tables: {tables}")
        raw = self.read_json(artifact, path)
        return LoggedTable(
            columns=list(raw["columns"]),
            rows=[list(row) for row in raw["data"]],
            column_types=raw.get("column_types", {}),
            raw=raw,
        )

    def history(self) -> list[dict[str, Any]]:
        """Rows passed to ``wandb.log``, decoded from JSON."""
        rows = []
        for record in self.records:
            if record.HasField("history"):
                row = {}
                for item in record.history.item:
                    key = item.key or "/".join(item.nested_key)
                    row[key] = json.loads(item.value_json)
                rows.append(row)
        return rows

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {}
        for record in self.records:
            if record.HasField("summary"):
                for item in record.summary.update:
                    key = item.key or "/".join(item.nested_key)
                    summary[key] = json.loads(item.value_json)
        return summary


def _logged_artifact(art: Any, version: int) -> LoggedArtifact:
    if art.manifest.manifest_file_path:  # a large manifest: wandb's file, one entry a line
        with gzip.open(art.manifest.manifest_file_path, "rt", encoding="utf-8") as f:
            contents = [json.loads(line) for line in f]
        entries = {
            c["path"]: ManifestEntry(
                path=c["path"],
                digest=c["digest"],
                size=c.get("size") or 0,
                ref=c.get("ref") or None,
                local_path=c.get("local_path") or None,
            )
            for c in contents
        }
    else:
        entries = {
            c.path: ManifestEntry(
                path=c.path,
                digest=c.digest,
                size=c.size,
                ref=c.ref or None,
                local_path=c.local_path or None,
            )
            for c in art.manifest.contents
        }
    return LoggedArtifact(
        name=art.name,
        type=art.type,
        version=version,
        aliases=tuple(art.aliases),
        metadata=json.loads(art.metadata) if art.metadata else {},
        client_id=art.client_id,
        sequence_client_id=art.sequence_client_id,
        digest=art.digest,
        entries=entries,
    )


def find_runs(wandb_dir: str | Path) -> list[Path]:
    """Offline run directories under ``wandb_dir`` (or ``wandb_dir/wandb``), oldest first."""
    root = Path(wandb_dir)
    if (root / "wandb").is_dir():
        root = root / "wandb"
    runs = sorted(p for p in root.glob("offline-run-*") if p.is_dir())
    if not runs:
        raise OfflineRunError(f"no offline-run-* directories in {root}")
    return runs
