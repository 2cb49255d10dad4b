"""Box layers as JSON text, written from the arrays in one pass.

A W&B table inlines every image's box layer: ``[{"box_caption": ..., "class_id": ...,
"domain": "pixel", "position": {"maxX": ..., ...}, "scores": {"score": ...}}, ...]`` (keys
sorted, ``json.dumps`` separators). Formatting those floats in Python is a per-box
cost (figures: benchmarks/results/media.md). This kernel writes the same text with the
numbers rounded to fixed decimals (positions to ``decimals`` places, scores to
``score_decimals``), the way ``json.dumps(float(round_half_even(v * 10**d)) / 10**d)``
would write them: shortest form, at least one decimal (``12.0``). The caption's score
keeps exactly 2 decimals, like ``f"{score:.2f}"`` (rounded the same way).
"""

from __future__ import annotations

import json

import numpy as np
import numpy.typing as npt
from numba import njit

from fastevalcb.kernels._common import as_array

# The literal pieces of one box, in order, around the values written between them.
_PIECES = (
    '{"box_caption": "',  # 0, then the escaped class name
    " ",  # 1, then the caption score (2 decimals, not stripped)
    '", "class_id": ',  # 2, then the class id
    ', "domain": "pixel"',  # 3, pixel boxes only
    ', "position": {"maxX": ',  # 4
    ', "maxY": ',  # 5
    ', "minX": ',  # 6
    ', "minY": ',  # 7
    '}, "scores": {"score": ',  # 8, boxes with scores only
    "}}",  # 9: closes scores and box (with scores), or position and box (without)
    "",  # 10: unused
    '"',  # 11: caption end without a score
    ", ",  # 12: between boxes
)


def _literals() -> tuple[np.ndarray, np.ndarray]:
    data = [p.encode("ascii") for p in _PIECES]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in data])]).astype(np.int64)
    return np.frombuffer(b"".join(data), np.uint8).copy(), offsets


_LIT, _LIT_OFF = _literals()


@njit(cache=True, nogil=True, inline="always")
def _put(buf: np.ndarray, pos: int, src: np.ndarray, start: int, end: int) -> int:
    n = end - start
    buf[pos : pos + n] = src[start:end]
    return pos + n


@njit(cache=True, nogil=True, inline="always")
def _put_digits(buf: np.ndarray, pos: int, v: int, width: int) -> int:
    """Write the non-negative int ``v`` in decimal, zero-padded to at least ``width``."""
    n = 1
    t = v // 10
    while t > 0:
        n += 1
        t //= 10
    n = max(n, width)
    for i in range(pos + n - 1, pos - 1, -1):
        buf[i] = 48 + v % 10
        v //= 10
    return pos + n


@njit(cache=True, nogil=True, inline="always")
def _put_int(buf: np.ndarray, pos: int, v: int) -> int:
    if v < 0:
        buf[pos] = 45  # '-'
        pos += 1
        v = -v
    return _put_digits(buf, pos, v, 1)


_POW10 = 10.0 ** np.arange(10)


@njit(cache=True, nogil=True, inline="always")
def _put_fixed(buf: np.ndarray, pos: int, x: float, decimals: int, strip: bool) -> int:
    """Write ``x`` rounded half-even to ``decimals`` places (``strip``: trailing zeros off,
    keeping one). The digits go right to left into the 24 bytes after ``pos`` (an int64
    has 19), then move into place: one division by 10 a digit."""
    v = np.int64(np.rint(x * _POW10[decimals]))
    if v < 0:
        buf[pos] = 45  # '-'
        pos += 1
        v = -v
    last = i = pos + 23
    for _ in range(decimals):
        buf[i] = 48 + v % 10
        v //= 10
        i -= 1
    if decimals == 0:
        buf[i] = 48
        i -= 1
    buf[i] = 46  # '.'
    buf[i - 1] = 48 + v % 10
    v //= 10
    i -= 2
    while v > 0:
        buf[i] = 48 + v % 10
        v //= 10
        i -= 1
    if strip:
        while buf[last] == 48 and buf[last - 1] != 46:
            last -= 1
    n = last - i
    for j in range(n):  # forward: the text moves left, never past what it copies
        buf[pos + j] = buf[i + 1 + j]
    return pos + n


@njit(cache=True, nogil=True)
def _box_json(
    xyxy: np.ndarray,
    class_id: np.ndarray,
    scores: np.ndarray,
    has_scores: bool,
    pixel: bool,
    offsets: np.ndarray,
    names: np.ndarray,
    name_off: np.ndarray,
    lit: np.ndarray,
    lit_off: np.ndarray,
    decimals: int,
    score_decimals: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(buf, image_offsets)``: the ASCII JSON array of each image's boxes, back to back."""
    n = xyxy.shape[0]
    longest = 0
    for k in range(name_off.shape[0] - 1):
        longest = max(longest, name_off[k + 1] - name_off[k])
    # room for every piece, each number's 25 bytes of scratch (_put_fixed) included
    buf = np.empty(n * (lit_off[-1] + longest + 8 * 25) + 2 * offsets.shape[0] + 25, np.uint8)
    out = np.empty(offsets.shape[0], np.int64)
    pos = 0
    for i in range(offsets.shape[0] - 1):
        out[i] = pos
        buf[pos] = 91  # '['
        pos += 1
        for b in range(offsets[i], offsets[i + 1]):
            if b > offsets[i]:
                pos = _put(buf, pos, lit, lit_off[12], lit_off[13])
            c = class_id[b]
            pos = _put(buf, pos, lit, lit_off[0], lit_off[1])
            pos = _put(buf, pos, names, name_off[c], name_off[c + 1])
            if has_scores:
                pos = _put(buf, pos, lit, lit_off[1], lit_off[2])
                pos = _put_fixed(buf, pos, scores[b], 2, False)
                pos = _put(buf, pos, lit, lit_off[2], lit_off[3])
            else:
                pos = _put(buf, pos, lit, lit_off[11], lit_off[12])
                pos = _put(buf, pos, lit, lit_off[2] + 1, lit_off[3])  # without its '"'
            pos = _put_int(buf, pos, c)
            if pixel:
                pos = _put(buf, pos, lit, lit_off[3], lit_off[4])
            pos = _put(buf, pos, lit, lit_off[4], lit_off[5])
            pos = _put_fixed(buf, pos, xyxy[b, 2], decimals, True)
            pos = _put(buf, pos, lit, lit_off[5], lit_off[6])
            pos = _put_fixed(buf, pos, xyxy[b, 3], decimals, True)
            pos = _put(buf, pos, lit, lit_off[6], lit_off[7])
            pos = _put_fixed(buf, pos, xyxy[b, 0], decimals, True)
            pos = _put(buf, pos, lit, lit_off[7], lit_off[8])
            pos = _put_fixed(buf, pos, xyxy[b, 1], decimals, True)
            if has_scores:
                pos = _put(buf, pos, lit, lit_off[8], lit_off[9])
                pos = _put_fixed(buf, pos, scores[b], score_decimals, True)
                pos = _put(buf, pos, lit, lit_off[9], lit_off[10])
            else:
                pos = _put(buf, pos, lit, lit_off[9], lit_off[10])  # close position and box
        buf[pos] = 93  # ']'
        pos += 1
    out[offsets.shape[0] - 1] = pos
    return buf[:pos], out


def box_json(
    offsets: npt.ArrayLike,
    xyxy: npt.ArrayLike,
    class_id: npt.ArrayLike,
    scores: npt.ArrayLike | None,
    class_labels: dict[int, str],
    domain: str | None = "pixel",
    decimals: int = 2,
    score_decimals: int = 4,
) -> list[str]:
    """Each image's box layer as JSON text, numbers rounded to fixed decimals.

    Args:
        offsets: ``(B + 1,)`` int64 packed-layout offsets (image ``i`` owns rows
            ``offsets[i]:offsets[i + 1]``).
        xyxy: ``(N, 4)`` float boxes (pixels for ``domain="pixel"``, else fractions).
        class_id: ``(N,)`` integer ids, each a key of ``class_labels``.
        scores: ``(N,)`` float scores, or None (ground truth: no scores, caption = name).
        class_labels: ``{class_id: name}``, non-negative ids (any number: LVIS has 1,203).
        domain: ``"pixel"`` or None.
        decimals: decimals of positions (2: 1/100 pixel).
        score_decimals: decimals of scores.

    Returns:
        ``B`` strings, each ``json.dumps(box_data, sort_keys=True)`` of the rounded boxes.

    Raises:
        ValueError: on shapes, unknown class ids, non-finite values, or decimals outside
            ``[0, 9]``.
    """
    off = as_array(offsets, "offsets", np.int64, (None,))
    boxes = as_array(xyxy, "xyxy", np.float64, (None, 4))
    n = boxes.shape[0]
    cid = as_array(class_id, "class_id", np.int64, (n,))
    has_scores = scores is not None
    sc = as_array(scores, "scores", np.float64, (n,)) if scores is not None else np.zeros(n)
    if len(off) == 0 or off[0] != 0 or off[-1] != n or np.any(np.diff(off) < 0):
        raise ValueError(f"offsets must go from 0 to {n} without decreasing, got {off[:8]}")
    for name, d in (("decimals", decimals), ("score_decimals", score_decimals)):
        if not isinstance(d, int) or not 0 <= d <= 9:
            raise ValueError(f"{name} must be an int in [0, 9], got {d!r}")
    if not (np.all(np.isfinite(boxes)) and np.all(np.isfinite(sc))):
        raise ValueError("box coordinates and scores must be finite to render box JSON")
    size = max(list(class_labels) + [-1]) + 1
    if n and (
        cid.min() < 0
        or cid.max() >= size
        or any(int(c) not in class_labels for c in np.unique(cid))
    ):
        bad = next(int(c) for c in np.unique(cid) if int(c) not in class_labels)
        raise ValueError(f"class_id {bad} has no entry in class_labels")
    encoded = [json.dumps(str(class_labels.get(k, "")))[1:-1].encode("ascii") for k in range(size)]
    name_off = np.concatenate([[0], np.cumsum([len(e) for e in encoded])]).astype(np.int64)
    names = np.frombuffer(b"".join(encoded) or b"\0", np.uint8).copy()
    buf, img_off = _box_json(
        boxes,
        cid,
        sc,
        has_scores,
        domain == "pixel",
        off,
        names,
        name_off,
        _LIT,
        _LIT_OFF,
        decimals,
        score_decimals,
    )
    text = buf.tobytes().decode("ascii")
    return [text[img_off[i] : img_off[i + 1]] for i in range(len(off) - 1)]
