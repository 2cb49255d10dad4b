"""Box geometry: format conversion, clipping, area and pairwise IoU.

Formats are ``keras.utils.bounding_boxes``' names (case-insensitive), the last axis in this
order:

==================== ====================================== =========================
format               last axis                              units
==================== ====================================== =========================
``xyxy``             ``x_min, y_min, x_max, y_max``         pixels
``yxyx``             ``y_min, x_min, y_max, x_max``         pixels
``xywh``             ``x_min, y_min, width, height``        pixels
``center_xywh``      ``x_center, y_center, width, height``  pixels
``center_yxhw``      ``y_center, x_center, height, width``  pixels
``rel_xyxy``         as ``xyxy``                            fractions of width/height
``rel_yxyx``         as ``yxyx``                            fractions of height/width
``rel_xywh``         as ``xywh``                            fractions of width/height
``rel_center_xywh``  as ``center_xywh``                     fractions of width/height
==================== ====================================== =========================

``cxcywh`` (our old name) is an alias of ``center_xywh``. A ``rel_*`` box is converted
through the image ``(height, width)``: x times the width, y times the height. A box whose
``x_max <= x_min`` or ``y_max <= y_min`` has zero area and an IoU of 0 with every box,
itself included.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from fastevalcb.kernels._common import as_array

BOX_FORMATS = (
    "xyxy",
    "yxyx",
    "xywh",
    "center_xywh",
    "center_yxhw",
    "rel_xyxy",
    "rel_yxyx",
    "rel_xywh",
    "rel_center_xywh",
)
BOX_FORMAT_ALIASES = {"cxcywh": "center_xywh"}
# Kernel layout codes: the pixel format a (rel_ or not) name is laid out like.
_LAYOUTS = ("xyxy", "yxyx", "xywh", "center_xywh", "center_yxhw")


@njit(cache=True, nogil=True, inline="always")
def _to_xyxy(
    a: float, b: float, c: float, d: float, code: int
) -> tuple[float, float, float, float]:
    """One box laid out as ``_LAYOUTS[code]`` -> ``x0, y0, x1, y1``."""
    if code == 0:
        return a, b, c, d
    if code == 1:
        return b, a, d, c
    if code == 2:
        return a, b, a + c, b + d
    if code == 3:
        return a - c / 2, b - d / 2, a + c / 2, b + d / 2
    return b - d / 2, a - c / 2, b + d / 2, a + c / 2  # center_yxhw: cy, cx, h, w


@njit(cache=True, nogil=True, inline="always")
def _from_xyxy(
    x0: float, y0: float, x1: float, y1: float, code: int
) -> tuple[float, float, float, float]:
    """``x0, y0, x1, y1`` -> one box laid out as ``_LAYOUTS[code]``."""
    if code == 0:
        return x0, y0, x1, y1
    if code == 1:
        return y0, x0, y1, x1
    if code == 2:
        return x0, y0, x1 - x0, y1 - y0
    if code == 3:
        return x0 + (x1 - x0) / 2, y0 + (y1 - y0) / 2, x1 - x0, y1 - y0
    return y0 + (y1 - y0) / 2, x0 + (x1 - x0) / 2, y1 - y0, x1 - x0


@njit(cache=True, nogil=True)
def _convert_boxes(
    boxes: np.ndarray,
    in_code: int,
    out_code: int,
    in_sx: float,
    in_sy: float,
    out_sx: float,
    out_sy: float,
) -> np.ndarray:
    """Convert ``(N, 4)`` float32 boxes between layout codes (index into ``_LAYOUTS``).

    Input x/y coordinates are multiplied by ``(in_sx, in_sy)`` (fractions to pixels; 1
    for pixels) and the output's by ``(out_sx, out_sy)`` (pixels to fractions).
    """
    n = boxes.shape[0]
    out = np.empty((n, 4), dtype=np.float32)
    for i in range(n):
        a, b, c, d = boxes[i, 0], boxes[i, 1], boxes[i, 2], boxes[i, 3]
        if in_code == 1 or in_code == 4:  # y first
            a, b, c, d = a * in_sy, b * in_sx, c * in_sy, d * in_sx
        else:
            a, b, c, d = a * in_sx, b * in_sy, c * in_sx, d * in_sy
        x0, y0, x1, y1 = _to_xyxy(a, b, c, d, in_code)
        r0, r1, r2, r3 = _from_xyxy(x0, y0, x1, y1, out_code)
        if out_code == 1 or out_code == 4:
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = (
                r0 * out_sy,
                r1 * out_sx,
                r2 * out_sy,
                r3 * out_sx,
            )
        else:
            out[i, 0], out[i, 1], out[i, 2], out[i, 3] = (
                r0 * out_sx,
                r1 * out_sy,
                r2 * out_sx,
                r3 * out_sy,
            )
    return out


@njit(cache=True, nogil=True)
def _clip_boxes(xyxy: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip ``(N, 4)`` float32 xyxy pixel boxes to ``[0, width] x [0, height]``."""
    out = np.empty_like(xyxy)
    for i in range(xyxy.shape[0]):
        out[i, 0] = min(max(xyxy[i, 0], 0.0), width)
        out[i, 1] = min(max(xyxy[i, 1], 0.0), height)
        out[i, 2] = min(max(xyxy[i, 2], 0.0), width)
        out[i, 3] = min(max(xyxy[i, 3], 0.0), height)
    return out


VALID_BOX, NON_FINITE_BOX, DEGENERATE_BOX = 0, 1, 2


@njit(cache=True, nogil=True)
def _box_validity(
    boxes: np.ndarray, scores: np.ndarray, skip: np.ndarray, corners: bool
) -> np.ndarray:
    """``(B, K)`` uint8 codes of ``(B, K, 4)`` boxes and ``(B, K)`` scores, in one pass."""
    b, k = scores.shape
    code = np.zeros((b, k), np.uint8)
    for i in range(b):
        for j in range(k):
            if skip[i, j]:
                continue
            p, q, r, t = boxes[i, j, 0], boxes[i, j, 1], boxes[i, j, 2], boxes[i, j, 3]
            if not (
                np.isfinite(p)
                and np.isfinite(q)
                and np.isfinite(r)
                and np.isfinite(t)
                and np.isfinite(scores[i, j])
            ):
                code[i, j] = NON_FINITE_BOX
                continue
            extent_a, extent_b = (r - p, t - q) if corners else (r, t)
            if not (extent_a > 0 and extent_b > 0):
                code[i, j] = DEGENERATE_BOX
    return code


@njit(cache=True, nogil=True, inline="always")
def _iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two xyxy boxes (1-D views), computed in float64; 0 when either is empty."""
    ax0, ay0, ax1, ay1 = np.float64(a[0]), np.float64(a[1]), np.float64(a[2]), np.float64(a[3])
    bx0, by0, bx1, by1 = np.float64(b[0]), np.float64(b[1]), np.float64(b[2]), np.float64(b[3])
    area_a = max(ax1 - ax0, 0.0) * max(ay1 - ay0, 0.0)
    area_b = max(bx1 - bx0, 0.0) * max(by1 - by0, 0.0)
    if area_a <= 0.0 or area_b <= 0.0:
        return 0.0
    iw = min(ax1, bx1) - max(ax0, bx0)
    ih = min(ay1, by1) - max(ay0, by0)
    if iw <= 0.0 or ih <= 0.0:
        return 0.0
    inter = iw * ih
    return float(inter / (area_a + area_b - inter))


@njit(cache=True, nogil=True)
def _box_iou_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU ``(N, M)`` float32 of ``(N, 4)`` and ``(M, 4)`` float32 xyxy boxes."""
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float32)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            out[i, j] = _iou(a[i], b[j])
    return out


def box_format_name(box_format: str, normalized: bool = False) -> str:
    """The ``keras.utils.bounding_boxes`` name of a format.

    Args:
        box_format: one of ``BOX_FORMATS`` (any case) or an alias (``"cxcywh"``).
        normalized: the boxes are fractions of the image (the old ``normalized=True``):
            returns the ``rel_`` name.

    Returns:
        A name in ``BOX_FORMATS``.

    Raises:
        ValueError: an unknown name, or ``normalized`` with a format that has no
            ``rel_`` version in Keras (``center_yxhw``).
    """
    if not isinstance(box_format, str):
        raise ValueError(f"box format must be a str, one of {BOX_FORMATS}, got {box_format!r}")
    name = BOX_FORMAT_ALIASES.get(box_format.lower(), box_format.lower())
    if name not in BOX_FORMATS:
        raise ValueError(
            f"box format must be one of {BOX_FORMATS} (or 'cxcywh', an alias of "
            f"'center_xywh'), got {box_format!r}"
        )
    if normalized and not name.startswith("rel_"):
        if f"rel_{name}" not in BOX_FORMATS:
            raise ValueError(f"{name!r} has no relative version in keras.utils.bounding_boxes")
        name = f"rel_{name}"
    return name


def _layout(fmt: str, name: str) -> tuple[int, bool]:
    try:
        full = box_format_name(fmt)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None
    relative = full.startswith("rel_")
    return _LAYOUTS.index(full[4:] if relative else full), relative


def convert_boxes(
    boxes: npt.ArrayLike,
    in_format: str = "xyxy",
    out_format: str = "xyxy",
    image_size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Convert boxes between any two of ``BOX_FORMATS``, like
    ``keras.utils.bounding_boxes.convert_format(boxes, in_format, out_format, height,
    width)``.

    Args:
        boxes: ``(..., 4)`` float boxes (e.g. ``(N, 4)`` or padded ``(B, M, 4)``).
        in_format: format of ``boxes``.
        out_format: wanted format.
        image_size: ``(height, width)`` in pixels; required when either format is ``rel_*``.

    Returns:
        float32 array with the shape of ``boxes``.
    """
    arr = np.asarray(boxes)
    if arr.ndim < 1 or arr.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4), got {tuple(arr.shape)}")
    in_code, in_rel = _layout(in_format, "in_format")
    out_code, out_rel = _layout(out_format, "out_format")
    if (in_rel or out_rel) and image_size is None:
        raise ValueError("image_size=(height, width) is required for rel_* box formats")
    h, w = (1.0, 1.0) if image_size is None else (float(image_size[0]), float(image_size[1]))
    flat = np.ascontiguousarray(arr.reshape(-1, 4), dtype=np.float32)
    out = _convert_boxes(
        flat,
        in_code,
        out_code,
        w if in_rel else 1.0,
        h if in_rel else 1.0,
        1.0 / w if out_rel else 1.0,
        1.0 / h if out_rel else 1.0,
    )
    return out.reshape(arr.shape)


def clip_boxes(xyxy: npt.ArrayLike, image_size: tuple[int, int]) -> np.ndarray:
    """Clip xyxy pixel boxes to the image.

    Args:
        xyxy: ``(..., 4)`` float boxes in xyxy pixels.
        image_size: ``(height, width)``.

    Returns:
        float32 array with the shape of ``xyxy``; boxes wholly outside the image collapse to
        zero area on the border.
    """
    arr = np.asarray(xyxy)
    if arr.ndim < 1 or arr.shape[-1] != 4:
        raise ValueError(f"xyxy must have shape (..., 4), got {tuple(arr.shape)}")
    flat = np.ascontiguousarray(arr.reshape(-1, 4), dtype=np.float32)
    out = _clip_boxes(flat, np.float32(image_size[1]), np.float32(image_size[0]))
    return out.reshape(arr.shape)


def box_validity(
    boxes: npt.ArrayLike, scores: npt.ArrayLike, box_format: str, skip: npt.ArrayLike | None = None
) -> np.ndarray:
    """Which boxes can be drawn: finite, and positive in both extents.

    Corner formats (``xyxy``, ``yxyx`` and their ``rel_`` forms) must have max > min on
    both axes; every other format (``xywh``, ``center_xywh``, ``center_yxhw``, ``rel_*``)
    holds width and height in slots 2 and 3, which must be positive.

    Args:
        boxes: ``(B, K, 4)`` float boxes in ``box_format``.
        scores: ``(B, K)`` float scores.
        box_format: the boxes' format name (:data:`BOX_FORMATS` or an alias).
        skip: optional ``(B, K)`` bool, rows not to check (padding): coded valid.

    Returns:
        ``(B, K)`` uint8: ``VALID_BOX`` (0), ``NON_FINITE_BOX`` (1: a NaN/inf coordinate or
        score) or ``DEGENERATE_BOX`` (2: finite, but inverted or zero-area).
    """
    name = box_format_name(box_format)
    arr = np.asarray(boxes)
    if arr.ndim != 3 or arr.shape[2] != 4:
        raise ValueError(f"boxes must have shape (B, K, 4), got {tuple(arr.shape)}")
    b, k = arr.shape[:2]
    sc = as_array(scores, "scores", np.float32, (b, k))
    mask = np.zeros((b, k), np.bool_) if skip is None else as_array(skip, "skip", np.bool_, (b, k))
    return _box_validity(
        np.ascontiguousarray(arr, np.float32),
        sc,
        mask,
        name.removeprefix("rel_") in ("xyxy", "yxyx"),
    )


def box_iou_batch(boxes_a: npt.ArrayLike, boxes_b: npt.ArrayLike) -> np.ndarray:
    """Pairwise IoU.

    Args:
        boxes_a: ``(N, 4)`` float xyxy boxes.
        boxes_b: ``(M, 4)`` float xyxy boxes.

    Returns:
        ``(N, M)`` float32 IoU; 0 for pairs involving a zero-area box.
    """
    a = as_array(boxes_a, "boxes_a", np.float32, (None, 4))
    b = as_array(boxes_b, "boxes_b", np.float32, (None, 4))
    return _box_iou_batch(a, b)
