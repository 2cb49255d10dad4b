"""Segmentation post-processing: argmax, nearest resize, per-class IoU, palettes, overlays.

Conventions (shared with the numpy twins in ``tests/helpers/reference.py``):

* ``logits_argmax`` follows ``np.argmax``: first maximum wins, a NaN counts as the maximum.
* ``resize_nearest`` samples pixel centres: ``src = ((2 * dst + 1) * in) // (2 * out)``
  (integer arithmetic, so it is exact; matches PIL's ``Image.NEAREST``).
* ``segmentation_metrics`` skips ``ignore_index`` pixels of the target; IoU of a class
  absent from both prediction and target is NaN.
* ``blend_overlay`` uses integer alpha ``a = round(alpha * 256)``:
  ``out = (image * (256 - a) + colour * a + 128) >> 8``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from fastevalcb.kernels._common import as_array, check_class_ids

NO_IGNORE = -(2**62)


@njit(cache=True, nogil=True)
def _logits_argmax(logits: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Argmax over the last axis of ``(B, H, W, C)`` float logits into ``out (B, H, W)``."""
    b, h, w, c = logits.shape
    for i in range(b):
        for y in range(h):
            for x in range(w):
                row = logits[i, y, x]
                best = 0
                bv = row[0]
                if not np.isnan(bv):
                    for k in range(1, c):
                        v = row[k]
                        if np.isnan(v):
                            best = k
                            break
                        if v > bv:
                            bv = v
                            best = k
                out[i, y, x] = best
    return out


@njit(cache=True, nogil=True)
def _resize_nearest(masks: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Nearest-neighbour resize of ``(B, H, W)`` integer masks to ``(B, out_h, out_w)``."""
    b, h, w = masks.shape
    out = np.empty((b, out_h, out_w), dtype=masks.dtype)
    xs = np.empty(out_w, dtype=np.int64)
    for x in range(out_w):
        xs[x] = ((2 * x + 1) * w) // (2 * out_w)
    for y in range(out_h):
        sy = ((2 * y + 1) * h) // (2 * out_h)
        for i in range(b):
            for x in range(out_w):
                out[i, y, x] = masks[i, sy, xs[x]]
    return out


_COUNTED, _IGNORED, _UNKNOWN = 0, 1, 2


@njit(cache=True, nogil=True, inline="always")
def _pixel_kind(pv: int, tv: int, num_classes: int, ignore_index: int) -> int:
    """A pixel of ``_class_counts``: counted, its target ignored, or an id outside
    ``[0, num_classes)`` (pred, or target unless it is ``ignore_index``)."""
    if pv < 0 or pv >= num_classes:
        return _UNKNOWN
    if tv == ignore_index:
        return _IGNORED
    if tv < 0 or tv >= num_classes:
        return _UNKNOWN
    return _COUNTED


@njit(cache=True, nogil=True)
def _class_counts(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int, confusion: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Per image per class ``(tp, pred_count, target_count)``, each ``(B, C)`` int64, and
    the pixels' ``[true, predicted]`` counts added to ``confusion`` (``(C, C)`` int64; a
    ``(0, 0)`` array skips them).

    Returns them with the flat index of the first pixel whose id is outside
    ``[0, num_classes)`` (pred, or target unless it is ``ignore_index``), or -1; the counts
    are meaningless when it is not -1. When the image has at least ``4 * C * C`` pixels, the
    pixels go into a joint ``(pred, target)`` histogram with four interleaved lanes, one
    increment per pixel and no store-to-load stall on runs of one class; the three counts
    are read off it per image.
    """
    b = pred.shape[0]
    c = num_classes
    tp = np.zeros((b, c), dtype=np.int64)
    pc = np.zeros((b, c), dtype=np.int64)
    tc = np.zeros((b, c), dtype=np.int64)
    n = pred[0].size if b else 0
    joint = 4 * c * c <= n
    cc = c * c
    hist = np.zeros(4 * cc if joint else 1, dtype=np.int32)
    for i in range(b):
        p = pred[i].ravel()
        t = target[i].ravel()
        if joint:
            hist[:] = 0
        for j in range(n):
            pv = p[j]
            tv = t[j]
            kind = _pixel_kind(pv, tv, c, ignore_index)
            if kind != _COUNTED:
                if kind == _IGNORED:
                    continue
                return tp, pc, tc, i * n + j
            if joint:
                hist[(j & 3) * cc + pv * c + tv] += 1
            else:
                pc[i, pv] += 1
                tc[i, tv] += 1
                if pv == tv:
                    tp[i, pv] += 1
                if confusion.shape[0]:
                    confusion[tv, pv] += 1
        if not joint:
            continue
        for pv in range(c):
            for tv in range(c):
                k = pv * c + tv
                v = hist[k] + hist[cc + k] + hist[2 * cc + k] + hist[3 * cc + k]
                pc[i, pv] += v
                tc[i, tv] += v
                if pv == tv:
                    tp[i, pv] += v
                if confusion.shape[0]:
                    confusion[tv, pv] += v
    return tp, pc, tc, -1


@njit(cache=True, nogil=True)
def _segmentation_metrics(
    tp: np.ndarray, pc: np.ndarray, tc: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class IoU ``(B, C)`` float32 (NaN if absent) and pixel accuracy ``(B,)`` float32."""
    b, num_classes = tp.shape
    iou = np.empty((b, num_classes), dtype=np.float32)
    acc = np.empty(b, dtype=np.float32)
    for i in range(b):
        correct = 0
        valid = 0
        for c in range(num_classes):
            union = pc[i, c] + tc[i, c] - tp[i, c]
            iou[i, c] = np.nan if union == 0 else tp[i, c] / union
            correct += tp[i, c]
            valid += tc[i, c]
        acc[i] = np.nan if valid == 0 else correct / valid
    return iou, acc


@njit(cache=True, nogil=True)
def _palette_lookup(masks: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Colour ``(B, H, W)`` integer masks with ``(C, 3)`` uint8 palette -> ``(B, H, W, 3)``."""
    b, h, w = masks.shape
    out = np.empty((b, h, w, 3), dtype=np.uint8)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                c = masks[i, y, x]
                out[i, y, x, 0] = palette[c, 0]
                out[i, y, x, 1] = palette[c, 1]
                out[i, y, x, 2] = palette[c, 2]
    return out


@njit(cache=True, nogil=True)
def _blend_overlay(
    images: np.ndarray, masks: np.ndarray, palette: np.ndarray, alpha256: np.int32
) -> np.ndarray:
    """Alpha-blend palette colours of ``masks`` over ``(B, H, W, 3)`` uint8 ``images``."""
    b, h, w, _ = images.shape
    out = np.empty_like(images)
    inv = 256 - alpha256
    for i in range(b):
        for y in range(h):
            for x in range(w):
                c = masks[i, y, x]
                for ch in range(3):
                    v = np.int32(images[i, y, x, ch]) * inv + np.int32(palette[c, ch]) * alpha256
                    out[i, y, x, ch] = (v + 128) >> 8
    return out


def _as_masks(masks: npt.ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(masks)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W) or (H, W), got {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype not in (np.uint8, np.int32, np.int64):
        arr = arr.astype(np.int32)
    return np.ascontiguousarray(arr)


def logits_argmax(logits: npt.ArrayLike) -> np.ndarray:
    """Class map from NHWC logits (or probabilities).

    Args:
        logits: ``(B, H, W, C)`` float32/float64 (others are converted to float32).

    Returns:
        ``(B, H, W)`` uint8 when ``C <= 256``, else int32.
    """
    arr = np.asarray(logits)
    if arr.ndim != 4 or arr.shape[-1] == 0:
        raise ValueError(f"logits must have shape (B, H, W, C) with C >= 1, got {tuple(arr.shape)}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    arr = np.ascontiguousarray(arr)
    out = np.empty(arr.shape[:3], dtype=np.uint8 if arr.shape[-1] <= 256 else np.int32)
    return _logits_argmax(arr, out)


def resize_nearest(masks: npt.ArrayLike, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of integer masks.

    Args:
        masks: ``(B, H, W)`` or ``(H, W)`` integer masks.
        size: ``(out_height, out_width)``, both >= 1.

    Returns:
        ``(B, out_height, out_width)`` (or 2-D if the input was 2-D), same dtype.
    """
    arr = _as_masks(masks, "masks")
    out_h, out_w = int(size[0]), int(size[1])
    if out_h < 1 or out_w < 1:
        raise ValueError(f"size must be (height, width) >= 1, got {tuple(size)}")
    if arr.shape[1] == 0 or arr.shape[2] == 0:
        raise ValueError(f"masks must have H, W >= 1 to resize, got {tuple(arr.shape)}")
    out = _resize_nearest(arr, out_h, out_w)
    return out[0] if np.ndim(masks) == 2 else out


def segmentation_metrics(
    pred: npt.ArrayLike, target: npt.ArrayLike, num_classes: int, ignore_index: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-image per-class IoU and pixel accuracy.

    Args:
        pred: ``(B, H, W)`` integer predicted class ids in ``[0, num_classes)``.
        target: ``(B, H, W)`` integer true class ids in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: number of classes ``C``.
        ignore_index: target value to skip (e.g. 255), or None.

    Returns:
        ``(iou, pixel_accuracy)``: ``(B, C)`` float32 with NaN for classes absent from both,
        and ``(B,)`` float32 (NaN for an image whose pixels are all ignored).

    Raises:
        ValueError: on shape mismatch or an id outside ``[0, num_classes)``.
    """
    return _segmentation_metrics(*segmentation_counts(pred, target, num_classes, ignore_index))


def segmentation_counts(
    pred: npt.ArrayLike,
    target: npt.ArrayLike,
    num_classes: int,
    ignore_index: int | None = None,
    confusion: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image per-class pixel counts, the sums behind IoU and pixel accuracy.

    Summing them over images gives dataset-level IoU (``tp / (pred + target - tp)``).

    Args:
        pred: ``(B, H, W)`` integer predicted class ids in ``[0, num_classes)``.
        target: ``(B, H, W)`` integer true class ids in ``[0, num_classes)`` or ``ignore_index``.
        num_classes: number of classes ``C``.
        ignore_index: target value to skip (e.g. 255), or None.
        confusion: a ``(C, C)`` int64 array to add the pixels' confusion matrix to, in
            place, from the same pass over the pixels (what ``confusion_matrix(target,
            pred, C, ignore_index, out=confusion)`` would add in a second pass); left
            unchanged when an id is out of range.

    Returns:
        ``(tp, pred_count, target_count)``, each ``(B, C)`` int64, over non-ignored pixels.

    Raises:
        ValueError: on shape mismatch or an id outside ``[0, num_classes)``.
    """
    p = _as_masks(pred, "pred")
    t = _as_masks(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"target must have the shape of pred {p.shape}, got {t.shape}")
    ignore = NO_IGNORE if ignore_index is None else int(ignore_index)
    c = int(num_classes)
    if confusion is not None and (confusion.shape != (c, c) or confusion.dtype != np.int64):
        raise ValueError(
            f"confusion must be a ({c}, {c}) int64 array, got {confusion.shape} {confusion.dtype}"
        )
    added = np.zeros((c, c) if confusion is not None else (0, 0), np.int64)
    tp, pc, tc, bad = _class_counts(p, t, c, ignore, added)
    if bad >= 0:  # the kernel checked the range as it counted; the checks name the id
        check_class_ids(p, num_classes, "pred")
        check_class_ids(t, num_classes, "target", ignore=ignore)
    if confusion is not None:
        confusion += added
    return tp, pc, tc


def _check_palette(palette: npt.ArrayLike, masks: np.ndarray) -> np.ndarray:
    pal = as_array(palette, "palette", np.uint8, (None, 3))
    check_class_ids(masks, pal.shape[0], "masks")
    return pal


def palette_lookup(masks: npt.ArrayLike, palette: npt.ArrayLike) -> np.ndarray:
    """Colour class maps.

    Args:
        masks: ``(B, H, W)`` or ``(H, W)`` integer class ids in ``[0, C)``.
        palette: ``(C, 3)`` uint8 RGB colours.

    Returns:
        ``(B, H, W, 3)`` (or ``(H, W, 3)``) uint8.
    """
    arr = _as_masks(masks, "masks")
    out = _palette_lookup(arr, _check_palette(palette, arr))
    return out[0] if np.ndim(masks) == 2 else out


def blend_overlay(
    images: npt.ArrayLike, masks: npt.ArrayLike, palette: npt.ArrayLike, alpha: float = 0.5
) -> np.ndarray:
    """Pre-render masks over images as an alpha blend.

    Args:
        images: ``(B, H, W, 3)`` uint8 RGB.
        masks: ``(B, H, W)`` integer class ids in ``[0, C)``.
        palette: ``(C, 3)`` uint8 colours.
        alpha: mask opacity in ``[0, 1]``.

    Returns:
        ``(B, H, W, 3)`` uint8 RGB.
    """
    img = np.asarray(images)
    if img.ndim != 4 or img.shape[-1] != 3:
        raise ValueError(f"images must have shape (B, H, W, 3), got {tuple(img.shape)}")
    if img.dtype != np.uint8:
        raise ValueError(f"images must be uint8, got dtype {img.dtype}")
    arr = _as_masks(masks, "masks")
    if arr.shape != img.shape[:3]:
        raise ValueError(f"masks must have shape {img.shape[:3]}, got {arr.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    return _blend_overlay(
        np.ascontiguousarray(img), arr, _check_palette(palette, arr), np.int32(round(alpha * 256))
    )
