"""Box geometry: format conversion, clipping, area and pairwise IoU.

Formats (all ``(N, 4)`` float32, last axis in this order):

* ``"xyxy"``: ``x_min, y_min, x_max, y_max``
* ``"xywh"``: ``x_min, y_min, width, height``
* ``"cxcywh"``: ``x_center, y_center, width, height``

Coordinates are pixels unless ``normalized=True``, in which case x is divided by the image
width and y by the image height. A box whose ``x_max <= x_min`` or ``y_max <= y_min`` has
zero area and an IoU of 0 with every box, itself included.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fastevalcb.kernels._common import as_array

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")


@njit(cache=True, nogil=True)
def _convert_boxes(boxes, in_code, out_code, in_sx, in_sy, out_sx, out_sy):
    """Convert ``(N, 4)`` float32 boxes between format codes (index into BOX_FORMATS).

    Input coordinates are multiplied by ``(in_sx, in_sy)`` (to pixels) and the output by
    ``(out_sx, out_sy)`` (from pixels).
    """
    n = boxes.shape[0]
    out = np.empty((n, 4), dtype=np.float32)
    for i in range(n):
        a = boxes[i, 0] * in_sx
        b = boxes[i, 1] * in_sy
        c = boxes[i, 2] * in_sx
        d = boxes[i, 3] * in_sy
        if in_code == 0:
            x0, y0, x1, y1 = a, b, c, d
        elif in_code == 1:
            x0, y0, x1, y1 = a, b, a + c, b + d
        else:
            x0, y0, x1, y1 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
        if out_code == 0:
            r0, r1, r2, r3 = x0, y0, x1, y1
        elif out_code == 1:
            r0, r1, r2, r3 = x0, y0, x1 - x0, y1 - y0
        else:
            r0, r1, r2, r3 = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        out[i, 0] = r0 * out_sx
        out[i, 1] = r1 * out_sy
        out[i, 2] = r2 * out_sx
        out[i, 3] = r3 * out_sy
    return out


@njit(cache=True, nogil=True)
def _clip_boxes(xyxy, width, height):
    """Clip ``(N, 4)`` float32 xyxy pixel boxes to ``[0, width] x [0, height]``."""
    out = np.empty_like(xyxy)
    for i in range(xyxy.shape[0]):
        out[i, 0] = min(max(xyxy[i, 0], 0.0), width)
        out[i, 1] = min(max(xyxy[i, 1], 0.0), height)
        out[i, 2] = min(max(xyxy[i, 2], 0.0), width)
        out[i, 3] = min(max(xyxy[i, 3], 0.0), height)
    return out


@njit(cache=True, nogil=True, inline="always")
def _iou(a, b):
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
    return inter / (area_a + area_b - inter)


@njit(cache=True, nogil=True)
def _box_iou_batch(a, b):
    """Pairwise IoU ``(N, M)`` float32 of ``(N, 4)`` and ``(M, 4)`` float32 xyxy boxes."""
    out = np.empty((a.shape[0], b.shape[0]), dtype=np.float32)
    for i in range(a.shape[0]):
        for j in range(b.shape[0]):
            out[i, j] = _iou(a[i], b[j])
    return out


def _format_code(fmt: str, name: str) -> int:
    if fmt not in BOX_FORMATS:
        raise ValueError(f"{name} must be one of {BOX_FORMATS}, got {fmt!r}")
    return BOX_FORMATS.index(fmt)


def convert_boxes(
    boxes,
    in_format: str = "xyxy",
    out_format: str = "xyxy",
    image_size: tuple[int, int] | None = None,
    in_normalized: bool = False,
    out_normalized: bool = False,
) -> np.ndarray:
    """Convert boxes between xyxy / xywh / cxcywh and pixel / normalized coordinates.

    Args:
        boxes: ``(..., 4)`` float boxes (e.g. ``(N, 4)`` or padded ``(B, M, 4)``).
        in_format: format of ``boxes``, one of ``BOX_FORMATS``.
        out_format: wanted format.
        image_size: ``(height, width)`` in pixels; required when either side is normalized.
        in_normalized: input coordinates are fractions of the image size.
        out_normalized: return fractions of the image size.

    Returns:
        float32 array with the shape of ``boxes``.
    """
    arr = np.asarray(boxes)
    if arr.ndim < 1 or arr.shape[-1] != 4:
        raise ValueError(f"boxes must have shape (..., 4), got {tuple(arr.shape)}")
    in_code = _format_code(in_format, "in_format")
    out_code = _format_code(out_format, "out_format")
    if (in_normalized or out_normalized) and image_size is None:
        raise ValueError("image_size=(height, width) is required for normalized boxes")
    h, w = (1.0, 1.0) if image_size is None else (float(image_size[0]), float(image_size[1]))
    flat = np.ascontiguousarray(arr.reshape(-1, 4), dtype=np.float32)
    out = _convert_boxes(
        flat,
        in_code,
        out_code,
        w if in_normalized else 1.0,
        h if in_normalized else 1.0,
        1.0 / w if out_normalized else 1.0,
        1.0 / h if out_normalized else 1.0,
    )
    return out.reshape(arr.shape)


def clip_boxes(xyxy, image_size: tuple[int, int]) -> np.ndarray:
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


def box_iou_batch(boxes_a, boxes_b) -> np.ndarray:
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
