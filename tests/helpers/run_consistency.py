"""Is an offline run, as it lies on disk (even after a kill), consistent for ``wandb sync``?

Reads the run's ``.wandb`` transaction log up to its last whole record
(:func:`fastevalcb.offline.read_records` stops at a torn tail) and the staged files its
artifact records name, and lists every problem:

* a stored entry whose staged file is missing, or differs from the recorded size or md5;
* a reference (``wandb-client-artifact://``) to an artifact the log never recorded, or to
  a name that artifact does not have;
* a table (a stored ``*.table.json`` entry) naming a media file (``media/...``) that is not
  an entry of its artifact.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from fastevalcb.offline import OfflineRun


def _md5_b64(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return base64.b64encode(digest.digest()).decode("ascii")


def _media_paths(value: Any) -> set[str]:
    """Every ``path`` naming a media file in a table's JSON (cells, masks, class sets)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str) and path.startswith("media/"):
                found.add(path)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def sync_problems(run_dir: str | Path) -> list[str]:
    """Every inconsistency of the offline run in ``run_dir`` (empty: it syncs)."""
    log = OfflineRun(run_dir)
    problems: list[str] = []
    try:
        artifacts = log.artifacts()
    except (OSError, EOFError, ValueError) as exc:  # a manifest file gone or torn
        return [f"an artifact record's manifest cannot be read: {exc}"]
    by_client_id = {a.client_id: a for a in artifacts}
    for art in artifacts:
        name = art.qualified_name
        for entry in art.entries.values():
            if entry.is_reference:
                target_id = entry.referenced_client_id
                if target_id is None:
                    continue  # wandb-artifact:// or external: not ours to check
                target = by_client_id.get(target_id)
                if target is None:
                    problems.append(
                        f"{name}/{entry.path} references an artifact the log "
                        f"never recorded ({target_id[:12]}...)"
                    )
                elif entry.referenced_path not in target.entries:
                    problems.append(
                        f"{name}/{entry.path} references "
                        f"{target.qualified_name}/{entry.referenced_path}, "
                        "which is not one of its entries"
                    )
                continue
            path = Path(entry.local_path) if entry.local_path else None
            if path is None or not path.is_file():
                problems.append(f"{name}/{entry.path}: staged file {entry.local_path} is missing")
                continue
            size = path.stat().st_size
            if size != entry.size:
                problems.append(f"{name}/{entry.path}: {size} bytes, recorded {entry.size}")
            elif _md5_b64(path) != entry.digest:
                problems.append(f"{name}/{entry.path}: md5 differs from the recorded digest")
            elif entry.path.endswith(".table.json"):
                try:
                    table = json.loads(path.read_text())
                except ValueError as exc:
                    problems.append(f"{name}/{entry.path} is not JSON: {exc}")
                    continue
                for media in sorted(_media_paths(table.get("data", []))):
                    if media not in art.entries:
                        problems.append(f"{name}/{entry.path} names {media}, which is not an entry")
    return problems
