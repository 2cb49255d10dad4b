"""Detections -> the box payload ``wandb.Image(boxes={key: payload})`` takes.

The payload built here is exactly what the usual hand-written loop produces (the
"stock pattern", which tests and benchmarks compare against)::

    {"box_data": [
        {"position": {"minX": float(x0), "maxX": float(x1),
                      "minY": float(y0), "maxY": float(y1)},
         "class_id": int(c),
         "box_caption": f"{class_labels[c]} {score:.2f}",   # ground truth: class_labels[c]
         "scores": {"score": float(score)},                 # ground truth: omitted
         "domain": "pixel"},                                # normalized boxes: omitted
        ...],
     "class_labels": class_labels}

Instead of per-box ``float()``/``int()`` calls on numpy scalars and wandb's per-box
validation, the columns are converted with one ``.tolist()`` per batch; the JSON text
is produced by wandb's own serializer (:func:`fastevalcb.tables.payload_json`), so
the file is byte-identical to what ``wandb.Image`` writes for the same payload.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from fastevalcb.tables import JSONText
from fastevalcb.types import Detections, PackedDetections

# x0, y0, x1, y1, class ids and scores (None for ground truth) as Python lists.
_Columns = tuple[list[float], list[float], list[float], list[float], list[int], list[float] | None]


def check_class_labels(
    class_id: np.ndarray, class_labels: dict[int, str], name: str = "class_id"
) -> None:
    """Raise ValueError naming the first id in ``class_id`` that has no label."""
    if class_id.size == 0:
        return
    keys = np.fromiter(class_labels.keys(), dtype=np.int64, count=len(class_labels))
    unknown = ~np.isin(class_id, keys)
    if unknown.any():
        bad = int(class_id.reshape(-1)[np.flatnonzero(unknown.reshape(-1))[0]])
        if len(keys) and np.array_equal(np.sort(keys), np.arange(len(keys))):
            valid = f"in [0, {len(keys)})"
        else:
            valid = f"one of the class_labels keys {sorted(class_labels)[:20]}"
        raise ValueError(f"{name} contains unknown class id {bad}; class ids must be {valid}")


def _columns(xyxy: np.ndarray, class_id: np.ndarray, scores: np.ndarray | None) -> _Columns:
    x0, y0, x1, y1 = xyxy.astype(np.float64).T.tolist() if len(xyxy) else ([],) * 4
    cid = class_id.tolist()
    sc = None if scores is None else scores.astype(np.float64).tolist()
    return x0, y0, x1, y1, cid, sc


def _box_dicts(
    cols: _Columns, s: int, e: int, names: dict[int, str], pixel: bool
) -> list[dict[str, Any]]:
    """Stock-pattern box dicts for rows ``s:e`` of the column lists."""
    x0, y0, x1, y1, cid, sc = cols
    rows = zip(x0[s:e], x1[s:e], y0[s:e], y1[s:e], cid[s:e])
    if sc is None:
        if pixel:
            return [
                {
                    "position": {"minX": a, "maxX": b, "minY": c, "maxY": d},
                    "class_id": k,
                    "box_caption": names[k],
                    "domain": "pixel",
                }
                for a, b, c, d, k in rows
            ]
        return [
            {
                "position": {"minX": a, "maxX": b, "minY": c, "maxY": d},
                "class_id": k,
                "box_caption": names[k],
            }
            for a, b, c, d, k in rows
        ]
    if pixel:
        return [
            {
                "position": {"minX": a, "maxX": b, "minY": c, "maxY": d},
                "class_id": k,
                "box_caption": f"{names[k]} {v:.2f}",
                "scores": {"score": v},
                "domain": "pixel",
            }
            for (a, b, c, d, k), v in zip(rows, sc[s:e])
        ]
    return [
        {
            "position": {"minX": a, "maxX": b, "minY": c, "maxY": d},
            "class_id": k,
            "box_caption": f"{names[k]} {v:.2f}",
            "scores": {"score": v},
        }
        for (a, b, c, d, k), v in zip(rows, sc[s:e])
    ]


def box_payloads(
    detections: PackedDetections, class_labels: dict[int, str], domain: str | None = "pixel"
) -> list[dict[str, Any]]:
    """One stock-format box payload per image of a packed batch.

    Args:
        detections: packed boxes; ``xyxy`` in pixels for ``domain="pixel"``, else fractions
            of the image size.
        class_labels: ``{class_id: name}`` covering every class id.
        domain: ``"pixel"`` or ``None`` (normalized coordinates).

    Returns:
        ``[{"box_data": [...], "class_labels": class_labels}, ...]``, one per image, ready
        for ``wandb.Image(img, boxes={"predictions": payload})``.

    Raises:
        ValueError: on a class id missing from ``class_labels`` or a bad ``domain``.
    """
    if domain not in ("pixel", None):
        raise ValueError(f"domain must be 'pixel' or None, got {domain!r}")
    check_class_labels(detections.class_id, class_labels)
    cols = _columns(detections.xyxy, detections.class_id, detections.scores)
    off = detections.offsets.tolist()
    pixel = domain == "pixel"
    return [
        {
            "box_data": _box_dicts(cols, off[i], off[i + 1], class_labels, pixel),
            "class_labels": class_labels,
        }
        for i in range(len(off) - 1)
    ]


def box_data_json(
    detections: PackedDetections,
    class_labels: dict[int, str],
    domain: str | None = "pixel",
    decimals: int | None = None,
) -> list[JSONText]:
    """Each image's ``box_data`` as the JSON text a table stores, built from the arrays.

    ``decimals=None``: ``box_data_json(d, labels)[i].text == json.dumps(box_payloads(d,
    labels)[i]["box_data"], sort_keys=True)``, without building the per-box dicts (no
    Python object per box). ``decimals=2``: positions rounded to 2 decimals and scores to
    4, written by a numba kernel (:func:`fastevalcb.kernels.box_json`). For images that only go into
    artifact tables (their box layers are inlined there); ``wandb.log`` needs
    :func:`box_payloads`' files.

    Raises:
        ValueError: as :func:`box_payloads`, or on non-finite coordinates or scores (JSON
            has no NaN; ``json.dumps`` would write a non-standard ``NaN``).
    """
    if domain not in ("pixel", None):
        raise ValueError(f"domain must be 'pixel' or None, got {domain!r}")
    check_class_labels(detections.class_id, class_labels)
    scores = detections.scores
    if decimals is not None:
        from fastevalcb.kernels import box_json

        keys: frozenset[str] = frozenset({"score"}) if scores is not None else frozenset()
        texts = box_json(
            detections.offsets,
            detections.xyxy,
            detections.class_id,
            scores,
            class_labels,
            domain,
            decimals,
        )
        return [JSONText(t, keys if t != "[]" else frozenset()) for t in texts]
    if not np.all(np.isfinite(detections.xyxy)) or (
        scores is not None and not np.all(np.isfinite(scores))
    ):
        raise ValueError("box coordinates and scores must be finite to render box JSON")
    x0, y0, x1, y1, cid, sc = _columns(detections.xyxy, detections.class_id, scores)
    names = {k: json.dumps(str(v)) for k, v in class_labels.items()}
    domain_part = '"domain": "pixel", ' if domain == "pixel" else ""
    position = '"position": {"maxX": %r, "maxY": %r, "minX": %r, "minY": %r}'
    if sc is None:
        fmt = '{"box_caption": %s, "class_id": %d, ' + domain_part + position + "}"
        boxes = [fmt % (names[k], k, b, d, a, c) for a, c, b, d, k in zip(x0, y0, x1, y1, cid)]
        keys = frozenset()
    else:
        fmt = (
            '{"box_caption": %s %.2f", "class_id": %d, '
            + domain_part
            + position
            + ', "scores": {"score": %r}}'
        )
        prefix = {k: n[:-1] for k, n in names.items()}  # '"name' without the closing quote
        boxes = [
            fmt % (prefix[k], v, k, b, d, a, c, v)
            for a, c, b, d, k, v in zip(x0, y0, x1, y1, cid, sc)
        ]
        keys = frozenset({"score"})
    off = detections.offsets.tolist()
    return [
        JSONText(
            "[" + ", ".join(boxes[off[i] : off[i + 1]]) + "]",
            keys if off[i + 1] > off[i] else frozenset(),
        )
        for i in range(len(off) - 1)
    ]


def box_payload(
    detections: Detections, class_labels: dict[int, str], domain: str | None = "pixel"
) -> dict[str, Any]:
    """Stock-format box payload of one image (see :func:`box_payloads`)."""
    packed = PackedDetections(
        np.array([0, len(detections)]), detections.xyxy, detections.class_id, detections.scores
    )
    return box_payloads(packed, class_labels, domain)[0]
