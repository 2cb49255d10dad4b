"""Offline run -> a static HTML report: page, app, and lazily loaded data shards.

Layout of what :func:`build_report` writes for ``-o report.html``::

    report.html                 the page (opens from file://, no network)
    report_files/app.js, app.css
    report_files/meta.js        run, tables, versions, columns, summary metrics, the latest
                                metric tables (per class, confusion, curves), problems
    report_files/images.js      one relative path per distinct image file
    report_files/t<T>v<V>.js    one table version: columnar cells, box layers, mask ids
    report_files/masks<C>.js    run-length-encoded class-id masks, 256 per chunk

Every shard is a script calling ``FEV.register(name, data)``: a ``file://`` page may not
``fetch()`` local files in Chromium, but it may load ``<script src>``. The page loads
``meta``, ``images`` and the version it shows first; other versions and mask chunks load
when asked for. With ``embed=True`` everything (images as ``data:`` URIs) goes into the
one HTML file as JSON script blocks the page parses on demand.

Images are drawn from the files the run staged for its artifacts (the ``local_path`` of
their manifest entries), referenced by path relative to the HTML file. Masks are decoded
here (class ids) because a ``file://`` page cannot read an image's pixels back.

A little over 500 lines: every shard's layout is written here, next to the others it
must agree with (``app.js`` reads them all).
"""

from __future__ import annotations

import base64
import json
import math
import os
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from fastevalcb.offline import LoggedArtifact, OfflineRun, OfflineRunError, find_runs

MASK_CHUNK = 256
_PAGE_FILES = ("app.js", "app.css")


class ReportError(ValueError):
    """The report cannot be built: no offline run, or one that cannot be read."""


@dataclass
class _Media:
    """Distinct media files of the run, by resolved local path."""

    images: list[str] = field(default_factory=list)
    image_ids: dict[str, int | None] = field(default_factory=dict)  # None: missing
    masks: list[Any] = field(default_factory=list)  # (h, w, rle) or None (missing)
    mask_ids: dict[str, int] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    by_client_id: dict[str, LoggedArtifact] = field(default_factory=dict)


def open_run(path: str | os.PathLike[str] | None) -> OfflineRun:
    """An offline run from a run dir, its ``.wandb`` file, a ``wandb/`` dir or its parent.

    ``None`` means the latest offline run under ``./wandb``.
    """
    target = Path(path) if path is not None else Path.cwd()
    if not target.exists():
        raise ReportError(
            f"{target} does not exist: expected an offline run directory "
            "(wandb/offline-run-<time>-<id>) or a folder holding wandb/"
        )
    try:
        if target.is_file() or any(target.glob("run-*.wandb")):
            run = OfflineRun(target)
        else:
            run = OfflineRun(find_runs(target)[-1])
        run.records  # noqa: B018  (read now, so a damaged log fails here)
        run.run_id  # noqa: B018
    except OfflineRunError as exc:
        raise ReportError(f"cannot read an offline run at {target}: {exc}") from None
    except Exception as exc:  # a damaged record that protobuf cannot parse
        raise ReportError(
            f"cannot read an offline run at {target}: the transaction log is "
            f"damaged ({type(exc).__name__}: {exc})"
        ) from None
    return run


def build_report(
    run_path: str | os.PathLike[str] | None,
    output: str | os.PathLike[str] = "report.html",
    *,
    embed: bool = False,
) -> Path:
    """Write the report of an offline run; returns the HTML file's path.

    Args:
        run_path: see :func:`open_run`.
        output: the HTML file; shards go to ``<stem>_files/`` next to it (not with embed).
        embed: one self-contained file: shards and images inlined.

    Raises:
        ReportError: no readable offline run there.
    """
    started = time.perf_counter()
    run = open_run(run_path)
    out = Path(output).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    files_dir = out.parent / f"{out.stem}_files"
    media = _Media()
    shards: dict[str, Any] = {}
    meta = _collect(run, media, shards)
    if embed:
        media.images = [_data_uri(p) for p in media.images]
    else:
        media.images = [_relative_url(p, out.parent) for p in media.images]
    shards["images"] = media.images
    for chunk in range(math.ceil(len(media.masks) / MASK_CHUNK)):
        items = media.masks[chunk * MASK_CHUNK : (chunk + 1) * MASK_CHUNK]
        shards[f"masks{chunk}"] = [
            None if m is None else {"h": m[0], "w": m[1], "rle": m[2]} for m in items
        ]
    meta["mask_chunk"] = MASK_CHUNK
    meta["missing_media"] = media.missing
    meta["build_s"] = round(time.perf_counter() - started, 3)
    shards["meta"] = meta
    _write(out, files_dir, shards, embed, title=f"fastevalcb report: run {meta['run']['id']}")
    return out


# -- reading the run ------------------------------------------------------------------------
def _collect(run: OfflineRun, media: _Media, shards: dict[str, Any]) -> dict[str, Any]:
    problems: list[str] = []
    if not run.complete:
        problems.append(
            "the run has no exit record: it is still running, or was killed "
            "before wandb finished writing; showing what was logged so far"
        )
    series: dict[tuple[str, str], list[LoggedArtifact]] = {}
    artifacts = run.artifacts()
    media.by_client_id = {a.client_id: a for a in artifacts}
    for art in artifacts:
        if art.type == "run_table":  # wandb's copies of tables passed to run.log: below
            continue
        for path in art.entries:
            if path.endswith(".table.json"):
                series.setdefault((art.name, path), []).append(art)
    tables = []
    # Prediction tables first (most versions first), then data tables.
    order = sorted(series.items(), key=lambda kv: (kv[1][0].type != "evaluation", -len(kv[1])))
    for t, ((name, path), arts) in enumerate(order):
        table: dict[str, Any] = {
            "key": f"t{t}",
            "artifact": name,
            "table": path[: -len(".table.json")],
            "type": arts[0].type,
            "versions": [],
        }
        for art in arts:
            shard = f"t{t}v{art.version}"
            version: dict[str, Any] = {
                "shard": shard,
                "version": art.version,
                "aliases": list(art.aliases),
                "epoch": art.metadata.get("epoch"),
                "step": art.metadata.get("global_step"),
                "rows": None,
            }
            try:
                shards[shard] = _version_shard(run, art, path, media, table)
                version["rows"] = shards[shard]["n"]
            except (OfflineRunError, OSError, ValueError, KeyError, TypeError) as exc:
                version["error"] = f"{art.qualified_name}/{path}: {exc}"
                problems.append(f"table {art.qualified_name}/{path} cannot be read: {exc}")
            version["label"] = _version_label(version)
            table["versions"].append(version)
        tables.append(table)
    if not tables:
        problems.append(
            "this run logged no tables (no artifact with a *.table.json): "
            "nothing to show but the summary metrics"
        )
    return {
        "run": {"id": run.run_id, "dir": str(run.run_dir), "complete": run.complete},
        "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "tables": tables,
        "metrics": _metrics(run),
        "metric_tables": _metric_tables(run, problems),
        "problems": problems,
    }


def _version_label(version: dict[str, Any]) -> str:
    parts = [f"v{version['version']}"]
    if version["epoch"] is not None:
        parts.append(f"epoch {version['epoch']}")
    if version["step"] is not None:
        parts.append(f"step {version['step']}")
    if version["rows"] is not None:
        parts.append(f"{version['rows']} rows")
    return " · ".join(parts)


def _version_shard(
    run: OfflineRun, art: LoggedArtifact, path: str, media: _Media, table: dict[str, Any]
) -> dict[str, Any]:
    """One table version as columns: scalars, image ids, box layers, mask ids."""
    loaded = run.load_table(art, path)
    columns, rows = loaded.columns, loaded.rows
    class_maps = _class_maps(loaded.column_types)
    out: dict[str, Any] = {"n": len(rows), "columns": [], "cells": {}, "images": {}}
    for c, name in enumerate(columns):
        values = [row[c] if c < len(row) else None for row in rows]
        kind = _kind(values)
        if kind == "image":
            out["images"][name] = _image_column(art, values, media, table, class_maps)
        else:
            out["cells"][name] = [_scalar(v, kind) for v in values]
        integer = kind == "number" and all(isinstance(v, int) or v is None for v in values)
        out["columns"].append({"name": name, "kind": kind, "integer": integer})
    return out


def _kind(values: list[Any]) -> str:
    kinds = set()
    for v in values:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            continue
        if isinstance(v, bool):
            kinds.add("bool")
        elif isinstance(v, (int, float)):
            kinds.add("number")
        elif isinstance(v, str):
            kinds.add("string")
        elif isinstance(v, dict) and v.get("_type") == "image-file":
            kinds.add("image")
        else:
            kinds.add("json")
        if len(kinds) > 1:
            return "json"
    return kinds.pop() if kinds else "number"


def _scalar(value: Any, kind: str) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if kind == "json" and value is not None:
        if isinstance(value, list) and all(isinstance(v, (str, int, float, bool)) for v in value):
            return ", ".join(_short(v) for v in value)
        return json.dumps(value, allow_nan=True)[:200]
    return value


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _class_maps(column_types: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{column: {"boxes": {layer: {id: name}}, "masks": ..., "classes": {id: name}}}``."""
    out = {}
    type_map = (column_types.get("params") or {}).get("type_map") or {}
    for name, wb_type in type_map.items():
        for t in (wb_type.get("params") or {}).get("allowed_types", [wb_type]):
            if t.get("wb_type") != "image-file":
                continue
            p = t.get("params") or {}
            out[name] = {
                "boxes": _const(p, "box_class_maps"),
                "masks": _const(p, "mask_class_maps"),
                "classes": _const(p, "class_map"),
            }
    return out


def _const(params: dict[str, Any], key: str) -> dict[str, Any]:
    value = (params.get(key) or {}).get("params", {}).get("val")
    return value if isinstance(value, dict) else {}


def _image_column(
    art: LoggedArtifact,
    cells: list[Any],
    media: _Media,
    table: dict[str, Any],
    class_maps: dict[str, Any],
) -> dict[str, Any]:
    """Image ids, box layers ``[x0, y0, x1, y1, class, score]`` (pixels) and mask ids."""
    image_ids: list[int | None] = []
    sizes: list[Any] = []
    boxes: dict[str, list[Any]] = {}
    masks: dict[str, list[Any]] = {}
    classes = table.setdefault("classes", {})
    for maps in class_maps.values():
        for layer_kind in ("boxes", "masks"):
            for layer, names in maps[layer_kind].items():
                classes.setdefault(f"{layer_kind}:{layer}", {}).update(names)
        if maps["classes"]:
            classes.setdefault("all", {}).update(maps["classes"])
    n = len(cells)
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            image_ids.append(None)
            sizes.append(None)
            continue
        image_ids.append(_image_id(art, cell, media))
        w, h = cell.get("width") or 1, cell.get("height") or 1
        sizes.append([w, h])
        for layer, box_list in (cell.get("boxes") or {}).items():
            if isinstance(box_list, dict):  # stock wandb: {"box_data": [...], "class_labels"}
                names = box_list.get("class_labels") or {}
                classes.setdefault(f"boxes:{layer}", {}).update(
                    {str(k): v for k, v in names.items()}
                )
                box_list = box_list.get("box_data") or []
            boxes.setdefault(layer, [None] * n)[i] = [_box(b, w, h) for b in box_list]
        for layer, mask in (cell.get("masks") or {}).items():
            masks.setdefault(layer, [None] * n)[i] = _mask_id(art, mask, media)
    layers = table.setdefault("layers", {"boxes": [], "masks": []})
    for kind, found in (("boxes", boxes), ("masks", masks)):
        layers[kind] += [k for k in found if k not in layers[kind]]
    return {"image": image_ids, "size": sizes, "boxes": boxes, "masks": masks}


def _box(box: dict[str, Any], w: float, h: float) -> list[Any]:
    pos = box["position"]
    if "minX" in pos:
        x0, y0, x1, y1 = pos["minX"], pos["minY"], pos["maxX"], pos["maxY"]
    else:  # middle / width / height
        (mx, my), bw, bh = pos.get("middle", (0, 0)), pos.get("width", 0), pos.get("height", 0)
        x0, y0, x1, y1 = mx - bw / 2, my - bh / 2, mx + bw / 2, my + bh / 2
    if box.get("domain") != "pixel":
        x0, x1, y0, y1 = x0 * w, x1 * w, y0 * h, y1 * h
    scores = box.get("scores") or {}
    score = next(iter(scores.values()), None) if scores else None
    return [
        round(x0, 2),
        round(y0, 2),
        round(x1, 2),
        round(y1, 2),
        box.get("class_id"),
        None if score is None or not math.isfinite(score) else round(score, 4),
    ]


def _local_file(
    by_client_id: dict[str, LoggedArtifact], art: LoggedArtifact, path: str | None
) -> str:
    """The staged file of an artifact entry (references followed); raises if gone.

    (``OfflineRun.resolve`` re-reads every manifest per call: too slow for 100k cells.)
    """
    if not path:
        raise OfflineRunError("a media cell without a path")
    entry = art.entries.get(path)
    while entry is not None and (client_id := entry.referenced_client_id) is not None:
        target = by_client_id.get(client_id)
        ref_path = entry.referenced_path
        entry = target.entries.get(ref_path) if target and ref_path else None
    if entry is None:
        raise OfflineRunError(
            f"{art.qualified_name}/{path}: no such entry (or a reference "
            "to an artifact this run did not log)"
        )
    if not entry.local_path or not Path(entry.local_path).is_file():
        raise OfflineRunError(
            f"{art.qualified_name}/{path}: staged file {entry.local_path!r} is gone"
        )
    return entry.local_path


def _image_id(art: LoggedArtifact, cell: dict[str, Any], media: _Media) -> int | None:
    """Id of an image file (by content hash: every version shows the data table's files)."""
    path = cell.get("path")
    key = cell.get("sha256") or f"{art.client_id}/{path}"
    if key in media.image_ids:
        return media.image_ids[key]
    try:
        local = _local_file(media.by_client_id, art, path)
    except OfflineRunError as exc:
        media.missing.append(f"image {art.qualified_name}/{path}: {exc}")
        media.image_ids[key] = None
        return None
    media.image_ids[key] = len(media.images)
    media.images.append(local)
    return media.image_ids[key]


def _mask_id(art: LoggedArtifact, mask: dict[str, Any], media: _Media) -> int | None:
    """Id of a mask (the same content, by sha256, has one id: versions can be compared)."""
    path = mask.get("path")
    try:
        local = _local_file(media.by_client_id, art, path)
    except OfflineRunError as exc:
        media.missing.append(f"mask {art.qualified_name}/{path}: {exc}")
        return None
    key = mask.get("sha256") or local
    if key not in media.mask_ids:
        try:
            decoded = _decode_mask(local)
        except OSError as exc:
            media.missing.append(f"mask {art.qualified_name}/{path}: unreadable PNG ({exc})")
            decoded = None
        media.mask_ids[key] = len(media.masks)
        media.masks.append(decoded)
    return media.mask_ids[key]


def _decode_mask(path: str) -> tuple[int, int, list[int]]:
    """``(h, w, [value, run, value, run, ...])`` of a class-id PNG, row-major."""
    from PIL import Image

    with Image.open(path) as img:
        arr = np.asarray(img.convert("L") if img.mode not in ("L", "P") else img)
    return (*arr.shape[:2], rle_encode(arr))


def rle_encode(mask: np.ndarray) -> list[int]:
    """Run-length code of a ``(H, W)`` integer mask, row-major: ``[v0, n0, v1, n1, ...]``."""
    flat = np.ascontiguousarray(mask).reshape(-1)
    if flat.size == 0:
        return []
    starts = np.flatnonzero(np.diff(flat)) + 1
    starts = np.concatenate(([0], starts))
    lengths = np.diff(np.concatenate((starts, [flat.size])))
    out = np.empty(2 * len(starts), np.int64)
    out[0::2] = flat[starts]
    out[1::2] = lengths
    runs: list[int] = out.tolist()
    return runs


def _metrics(run: OfflineRun) -> dict[str, Any]:
    """Numeric history series ``{name: [[step, value], ...]}`` keyed by ``*/global_step``."""
    series: dict[str, list[list[float | None]]] = {}
    for row in run.history():
        step_keys = [k for k in row if k.endswith("/global_step")]
        for key, value in row.items():
            if key.startswith("_") or key.endswith(("/global_step", "/epoch")):
                continue
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            prefix = key.split("/")[0]
            step_key = f"{prefix}/global_step"
            step = row.get(step_key, row.get("_step"))
            if step_key not in step_keys and "_step" not in row:
                continue
            series.setdefault(key, []).append([step, value if math.isfinite(value) else None])
    return {"series": dict(sorted(series.items()))}


#: Metric tables the page draws, by the end of their ``run.log`` key (what the task
#: callbacks log with their summary metrics, :mod:`fastevalcb.tasks._metrics`).
METRIC_TABLES = ("per_class", "confusion_matrix_table", "pr_curve_table", "reliability_table")


def _metric_tables(run: OfflineRun, problems: list[str]) -> dict[str, Any]:
    """The latest of each metric table logged with ``run.log``: ``{key: {"step",
    "columns", "data"}}``, read from the run's ``files/media/table`` copies."""
    latest: dict[str, tuple[Any, str]] = {}
    for row in run.history():
        for key, value in row.items():
            if not key.endswith("/_type") or value != "table-file":
                continue
            name = key[: -len("/_type")]
            if name.rsplit("/", 1)[-1] in METRIC_TABLES and f"{name}/path" in row:
                prefix = name.split("/")[0]
                latest[name] = (
                    row.get(f"{prefix}/global_step", row.get("_step")),
                    row[f"{name}/path"],
                )
    out: dict[str, Any] = {}
    for name, (step, path) in sorted(latest.items()):
        try:
            data = json.loads((run.run_dir / "files" / path).read_text())
            out[name] = {"step": step, "columns": data["columns"], "data": data["data"]}
        except (OSError, ValueError, KeyError) as exc:
            problems.append(f"metric table {name} ({path}) cannot be read: {exc}")
    return out


# -- writing ----------------------------------------------------------------------------------
def _relative_url(local: str, base: Path) -> str:
    try:
        rel = os.path.relpath(local, base)
    except ValueError:  # another drive
        return Path(local).resolve().as_uri()
    return quote(rel.replace(os.sep, "/"))


def _data_uri(local: str) -> str:
    data = Path(local).read_bytes()
    kind = (
        "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpeg" if data[:2] == b"\xff\xd8" else "png"
    )
    return f"data:image/{kind};base64," + base64.b64encode(data).decode("ascii")


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")


def _template(name: str) -> str:
    return resources.files("fastevalcb.report").joinpath(name).read_text(encoding="utf-8")


def _write(out: Path, files_dir: Path, shards: dict[str, Any], embed: bool, title: str) -> None:
    page = _template("page.html").replace("{{title}}", title)
    if embed:
        blocks = "\n".join(
            f'<script type="application/json" id="fev-{name}">{_dumps(data)}</script>'
            for name, data in shards.items()
        )
        head = f"<style>{_template('app.css')}</style>"
        tail = f"{blocks}\n<script>{_template('app.js')}</script>"
        page = (
            page.replace("{{head}}", head)
            .replace("{{files}}", "")
            .replace("{{files_hint}}", "")
            .replace("{{tail}}", tail)
        )
    else:
        files_dir.mkdir(exist_ok=True)
        for old in files_dir.glob("*.js"):
            old.unlink()
        for name in _PAGE_FILES:
            (files_dir / name).write_text(_template(name), encoding="utf-8")
        for name, data in shards.items():
            (files_dir / f"{name}.js").write_text(
                f"FEV.register({json.dumps(name)},{_dumps(data)});\n", encoding="utf-8"
            )
        rel = quote(files_dir.name)
        head = f'<link rel="stylesheet" href="{rel}/app.css">'
        tail = f'<script src="{rel}/app.js"></script>'
        page = (
            page.replace("{{head}}", head)
            .replace("{{files}}", rel)
            .replace("{{files_hint}}", f" ({rel}/ next to this page)")
            .replace("{{tail}}", tail)
        )
    out.write_text(page, encoding="utf-8")
