"""Minimal, thread-friendly PNG encoder for uint8 images and masks.

PIL's PNG writer holds the GIL while deflating, so a thread pool cannot run several
encodes at once. This writer does the same job with numpy (row filter) and ``zlib``
or, when installed, ISA-L's faster deflate (``isal``; both release the GIL), so ``N``
threads encode ``N`` images at a time. The files are
standard 8-bit PNGs (grey, RGB or RGBA, no interlace) whose decoded pixels equal the
input; their bytes differ from PIL's, so their sha256 differs too.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import os
import struct
import zlib
from types import ModuleType
from typing import Any

import numpy as np

_isal_zlib: ModuleType | None
try:  # ISA-L's deflate: faster than zlib level 1, also releases the GIL
    from isal import isal_zlib as _isal_zlib
except ImportError:  # pragma: no cover - optional (pip install "fastevalcb[fast]")
    _isal_zlib = None

BACKENDS = ("zlib", "isal")
_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_COLOR_TYPE = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (grey, RGB, RGBA)
_IEND = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))


def as_image_array(image: Any) -> np.ndarray:
    """Normalise an image the way ``wandb.Image(ndarray)`` does, without PIL.

    ``.numpy()`` tensors are converted, size-1 dimensions squeezed and the values cast with
    ``astype(np.uint8)`` (so floats are truncated, as in wandb).

    Args:
        image: ``(H, W)``, ``(H, W, 1)``, ``(H, W, 3)`` or ``(H, W, 4)`` array-like.

    Returns:
        C-contiguous uint8 ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``.
    """
    arr = image.numpy() if hasattr(image, "numpy") else np.asarray(image)
    if arr.ndim > 2:
        arr = arr.squeeze()
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (3, 4))):
        raise ValueError(
            f"image must have shape (H, W), (H, W, 3) or (H, W, 4), got {tuple(np.shape(image))}"
        )
    return np.ascontiguousarray(arr.astype(np.uint8, copy=False))


def _chunk(tag: bytes, data: bytes) -> bytes:
    crc = zlib.crc32(data, zlib.crc32(tag))
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def default_backend(compress_level: int) -> str:
    """``"isal"`` for levels 1-3 when python-isal is installed, else ``"zlib"``."""
    return "isal" if _isal_zlib is not None and 1 <= compress_level <= 3 else "zlib"


def encode_png(
    image: np.ndarray,
    compress_level: int = 1,
    strategy: int | None = None,
    backend: str | None = None,
    row_filter: str = "sub",
) -> bytes:
    """Encode a uint8 image as PNG bytes.

    Each row uses the PNG "Sub" filter (difference to the pixel on the left), which is one
    vectorised numpy subtraction and compresses photos well, or none (``row_filter="none"``),
    which is faster and smaller for class masks: their runs deflate as they are, and Sub
    would turn each class edge into two symbols.

    Args:
        image: C-contiguous uint8 ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``
            (see :func:`as_image_array`).
        compress_level: deflate level 0-9 (1: fast, 6: PIL's default size).
        strategy: zlib strategy (zlib backend); None picks ``Z_RLE`` for colour images
            (faster than the default and smaller on noisy photos after the Sub
            filter) and ``Z_DEFAULT_STRATEGY`` for single-channel images (class masks).
        backend: ``"zlib"`` or ``"isal"`` (ISA-L, levels 1-3 map to ISA-L's 1-3; needs
            ``pip install isal``); None: :func:`default_backend`. Both write standard
            zlib streams; the decoded pixels are the same.
        row_filter: ``"sub"`` or ``"none"``, the PNG filter of every row.

    Returns:
        PNG file contents.
    """
    if image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ValueError(f"image must be uint8 (H, W[, C]), got {image.dtype} {image.shape}")
    h, w = image.shape[:2]
    c = 1 if image.ndim == 2 else image.shape[2]
    if c not in _COLOR_TYPE:
        raise ValueError(f"image must have 1, 3 or 4 channels, got {c}")
    if h == 0 or w == 0:
        raise ValueError(f"image must be at least 1x1, got {image.shape}")
    rows = image.reshape(h, w * c)
    raw = np.empty((h, w * c + 1), dtype=np.uint8)
    if row_filter == "sub":
        raw[:, 0] = 1  # PNG filter type 1
        raw[:, 1 : 1 + c] = rows[:, :c]
        np.subtract(rows[:, c:], rows[:, :-c], out=raw[:, 1 + c :])
    elif row_filter == "none":
        raw[:, 0] = 0
        raw[:, 1:] = rows
    else:
        raise ValueError(f"row_filter must be 'sub' or 'none', got {row_filter!r}")
    header = struct.pack(">IIBBBBB", w, h, 8, _COLOR_TYPE[c], 0, 0, 0)
    backend = backend or default_backend(compress_level)
    if backend == "isal":
        if _isal_zlib is None:
            raise ValueError("backend='isal' needs python-isal: pip install isal")
        idat = _isal_zlib.compress(raw.data, min(max(compress_level, 0), 3))
    elif backend == "zlib":
        if strategy is None:
            strategy = zlib.Z_DEFAULT_STRATEGY if c == 1 else zlib.Z_RLE
        deflate = zlib.compressobj(compress_level, zlib.DEFLATED, 15, 8, strategy)
        idat = deflate.compress(raw.data) + deflate.flush()
    else:
        raise ValueError(f"backend must be one of {BACKENDS} or None, got {backend!r}")
    return _SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _IEND


def encode_png_pil(image: np.ndarray) -> bytes:
    """Encode like ``wandb.Image`` does (PIL, default level): byte-identical files, but PIL
    holds the GIL, so this runs serially even on a thread pool."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="png", transparency=None)
    return buf.getvalue()


def write_png(
    image: np.ndarray, path: str, compress_level: int | None = 1, row_filter: str = "sub"
) -> tuple[str, str, int]:
    """Encode ``image`` to ``path``; safe to call from worker threads.

    ``compress_level=None`` encodes with PIL exactly like wandb (see :func:`encode_png_pil`);
    ``row_filter`` as in :func:`encode_png`.

    Returns:
        ``(path, sha256 hex digest, size in bytes)`` of the written file.
    """
    data = (
        encode_png_pil(image)
        if compress_level is None
        else encode_png(image, compress_level, row_filter=row_filter)
    )
    with open(path, "wb") as f:
        f.write(data)
    return path, hashlib.sha256(data).hexdigest(), len(data)


def write_bytes(data: bytes, path: str) -> tuple[str, str, int]:
    """Write ``data`` to ``path`` and return ``(path, sha256 hex digest, size)``."""
    with open(path, "wb") as f:
        f.write(data)
    return path, hashlib.sha256(data).hexdigest(), len(data)


_PREFIX = os.urandom(6).hex()
_COUNTER = itertools.count()


def tmp_name(directory: str, suffix: str) -> str:
    """A fresh, process-unique file path in ``directory`` ending in ``suffix``."""
    return os.path.join(directory, f"{_PREFIX}{next(_COUNTER):08d}{suffix}")
