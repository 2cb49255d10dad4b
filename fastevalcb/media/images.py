"""Batches of images + predictions -> ready ``wandb.Image`` objects, encoded in threads.

``wandb.Image(pixels, boxes=..., masks=...)`` does everything serially in the caller's
thread, and PIL holds the GIL while deflating. :func:`build_images` instead

1. submits every image and mask PNG encode (+ sha256 + temp-file write) to a thread pool
   (:mod:`fastevalcb.media.png`; zlib and hashlib release the GIL),
2. meanwhile builds the box payloads and their JSON text in the calling thread
   (:mod:`fastevalcb.media.boxes`), and
3. wraps the finished files in ordinary ``wandb.Image`` / ``BoundingBoxes2D`` /
   ``ImageMask`` objects (:mod:`fastevalcb.tables`, the one package touching wandb internals).

The result logs, binds and serializes through wandb exactly like stock objects: box JSON
files are byte-identical to stock; image and mask PNGs decode to the same pixels but are
encoded differently (so their sha256, size and media file names differ).
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np
import wandb

from fastevalcb import tables
from fastevalcb.media.boxes import box_data_json, box_payloads
from fastevalcb.media.masks import as_mask_batch, default_palette
from fastevalcb.media.png import (
    as_image_array,
    encode_png,
    encode_png_pil,
    tmp_name,
    write_bytes,
    write_png,
)
from fastevalcb.types import PackedDetections, SegmentationMasks

T = TypeVar("T")
# A written file: ``(path, sha256 hex, size)`` (a temp file, or an artifact's staged file).
_File = tuple[str, str, int]


@dataclass(frozen=True)
class EncodedImage:
    """An image PNG-encoded once, reusable across epochs.

    Attributes:
        data: PNG file contents.
        sha256: hex digest of ``data``.
        width: pixels.
        height: pixels.
    """

    data: bytes
    sha256: str
    width: int
    height: int


def _encode_one(image: Any, compress_level: int | None) -> EncodedImage:
    arr = as_image_array(image)
    data = encode_png_pil(arr) if compress_level is None else encode_png(arr, compress_level)
    return EncodedImage(data, hashlib.sha256(data).hexdigest(), arr.shape[1], arr.shape[0])


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """A process-wide encoder pool per size (made once: thread start-up is not free)."""
    with _POOLS_LOCK:
        if workers not in _POOLS:
            _POOLS[workers] = ThreadPoolExecutor(workers, thread_name_prefix="fastevalcb-png")
        return _POOLS[workers]


class _Chunked(Generic[T]):
    """``fn(*args)`` for each item of ``columns``, in a few contiguous chunks on ``pool``.

    One future per chunk, not per item: a future's own cost is comparable to the PNG
    encode of a small image. ``results()`` waits and gives the per-item results in order.
    """

    def __init__(
        self, pool: ThreadPoolExecutor, workers: int, fn: Callable[..., T], *columns: Sequence[Any]
    ) -> None:
        n = len(columns[0]) if columns else 0
        size = max(1, -(-n // (4 * workers)))  # ~4 chunks per thread: balanced, few futures
        rows = list(zip(*columns))
        self._futures = [_submit(pool, fn, rows[i : i + size]) for i in range(0, n, size)]

    def results(self) -> list[T]:
        return [r for future in self._futures for r in future.result()]


def _submit(
    pool: ThreadPoolExecutor, fn: Callable[..., T], rows: list[tuple[Any, ...]]
) -> Future[list[T]]:
    """``pool.submit`` of one chunk, or the chunk run here when the pool takes no more work:
    after interpreter shutdown has begun, where the run's end still writes what was queued
    (``worker`` flushes at exit, after ``concurrent.futures`` stopped accepting futures)."""
    try:
        return pool.submit(_run_chunk, fn, rows)
    except RuntimeError:  # "cannot schedule new futures after (interpreter) shutdown"
        done: Future[list[T]] = Future()
        try:
            done.set_result(_run_chunk(fn, rows))
        except Exception as exc:  # raised by results(), as from the pool
            done.set_exception(exc)
        return done


def _run_chunk(fn: Callable[..., T], rows: list[tuple[Any, ...]]) -> list[T]:
    return [fn(*row) for row in rows]


def _image_list(images: Any) -> list[Any]:
    if isinstance(images, np.ndarray) or hasattr(images, "numpy"):
        arr = images.numpy() if hasattr(images, "numpy") else images
        if arr.ndim not in (3, 4):
            raise ValueError(f"images must have shape (B, H, W[, C]), got {tuple(arr.shape)}")
        return list(arr)
    return list(images)


def encode_images(
    images: Any, compress_level: int | None = 1, max_workers: int | None = None
) -> list[EncodedImage]:
    """PNG-encode a batch once (e.g. the fixed validation images) on a thread pool.

    Args:
        images: ``(B, H, W[, C])`` array or a list of ``(H, W[, C])`` arrays; cast to
            uint8 like ``wandb.Image`` does.
        compress_level: zlib level 0-9, or None for PIL (byte-identical to wandb).
        max_workers: threads; default ``os.cpu_count()``.

    Returns:
        One :class:`EncodedImage` per image, to pass to :func:`build_images`.
    """
    items = _image_list(images)
    workers = max_workers or os.cpu_count() or 1
    return _Chunked(
        _pool(workers),
        workers,
        functools.partial(_encode_one, compress_level=compress_level),
        items,
    ).results()


def _write_image(
    image: Any, path: str, compress_level: int | None, stager: tables.Stager | None = None
) -> tuple[_File, int, int]:
    if isinstance(image, wandb.Image):
        file = tables.media_file(image)
        if file is None:
            raise ValueError("a wandb.Image given as a base image must be backed by a file")
        return (file, *tables.image_size(image))
    if isinstance(image, EncodedImage):
        if stager is not None:
            return (
                stager.write(image.data, _IMAGE_DIR, tables.IMAGE_SUFFIX),
                image.width,
                image.height,
            )
        with open(path, "wb") as f:
            f.write(image.data)
        return (path, image.sha256, len(image.data)), image.width, image.height
    arr = as_image_array(image)
    if stager is not None:
        data = encode_png_pil(arr) if compress_level is None else encode_png(arr, compress_level)
        return stager.write(data, _IMAGE_DIR, tables.IMAGE_SUFFIX), arr.shape[1], arr.shape[0]
    return write_png(arr, path, compress_level), arr.shape[1], arr.shape[0]


def _write_mask(
    mask: np.ndarray, path: str, compress_level: int | None, stager: tables.Stager | None = None
) -> _File:
    if stager is None:
        return write_png(mask, path, compress_level, row_filter="none")
    data = (
        encode_png_pil(mask)
        if compress_level is None
        else encode_png(mask, compress_level, row_filter="none")
    )
    return stager.write(data, _MASK_DIR, tables.MASK_SUFFIX)


_IMAGE_DIR, _MASK_DIR = tables.IMAGE_DIR, tables.MASK_DIR


def build_images(
    images: Any,
    *,
    boxes: dict[str, PackedDetections] | None = None,
    masks: dict[str, SegmentationMasks | np.ndarray] | None = None,
    class_labels: dict[int, str] | None = None,
    box_domain: str | None = "pixel",
    captions: list[str] | None = None,
    compress_level: int | None = 1,
    max_workers: int | None = None,
    keep_mask_data: bool = True,
    table_only: bool = False,
    box_decimals: int | None = None,
    stager: tables.Stager | None = None,
) -> list[wandb.Image]:
    """Build one ``wandb.Image`` per image with optional box and mask layers.

    Equivalent to, per image ``i``::

        wandb.Image(images[i], caption=captions[i],
                    boxes={k: box_payload(boxes[k].image(i), class_labels) for k in boxes},
                    masks={k: {"mask_data": masks[k][i], "class_labels": class_labels}
                           for k in masks})

    Args:
        images: ``(B, H, W[, C])`` array, list of ``(H, W[, C])`` arrays, list of
            :class:`EncodedImage` (encoded once, reused: only a file copy per call), or
            list of file-backed ``wandb.Image`` (e.g. a logged data table's images): the
            new images share that file (nothing is encoded or copied, so a table in
            another artifact can reference it) and keep its box and mask layers unless a
            layer of the same name is given here.
        boxes: ``{layer: PackedDetections}`` with ``B`` images each, e.g.
            ``{"predictions": ..., "ground_truth": ...}``; layers without scores are ground
            truth (caption is the class name, no ``scores``).
        masks: ``{layer: SegmentationMasks or (B, H, W) integer array}``.
        class_labels: ``{class_id: name}``; required with boxes or masks and must cover
            every class id present.
        box_domain: ``"pixel"`` (xyxy pixel boxes) or ``None`` (normalized [0, 1] boxes).
        captions: optional ``B`` captions.
        compress_level: zlib level 0-9 for image and mask PNGs (1: fast, files somewhat
            larger than PIL's), or None to encode with PIL like wandb (byte-identical files, same
            sha256 and media file names as stock, but serial: PIL holds the GIL).
        max_workers: encoder threads; default ``os.cpu_count()``.
        keep_mask_data: keep each mask array on its ``ImageMask`` like wandb does; False
            drops it once its PNG is written (bounded memory for long-lived tables).
        table_only: the images only go into artifact tables (``tables.add_table``): box
            layers are kept as JSON text (:func:`~fastevalcb.media.boxes.box_data_json`)
            and no box files are written. Such images cannot be passed to ``wandb.log``.
        box_decimals: with ``table_only``, round box positions to this many decimals (and
            scores to 4) in a numba kernel; None keeps full precision (slower).
        stager: write the new image and mask files straight into this artifact's staging
            (:class:`fastevalcb.tables.Stager`) instead of temp files that adding the
            table to the artifact would copy and hash again. The images then belong to
            that artifact's table.

    Returns:
        ``list[wandb.Image]`` of length ``B``, ready for ``wandb.Table.add_data`` or
        ``run.log``.

    Raises:
        ValueError: on mismatched batch sizes, bad shapes or unknown class ids.
    """
    items = _image_list(images)
    n = len(items)
    boxes, masks = boxes or {}, masks or {}
    if (boxes or masks) and class_labels is None:
        raise ValueError("class_labels={id: name} is required with boxes or masks")
    labels = {} if class_labels is None else class_labels
    if captions is not None and len(captions) != n:
        raise ValueError(f"captions must have length {n}, got {len(captions)}")
    for key, det in boxes.items():
        if det.num_images != n:
            raise ValueError(f"boxes[{key!r}] must have {n} images, got {det.num_images}")
    mask_arrays: dict[str, np.ndarray] = {}
    for key, m in masks.items():
        mask_arrays[key] = as_mask_batch(m, labels, f"masks[{key!r}]")
        if len(mask_arrays[key]) != n:
            raise ValueError(f"masks[{key!r}] must have {n} images, got {len(mask_arrays[key])}")

    tmp = tables.media_tmp_dir()
    workers = max_workers or os.cpu_count() or 1
    pool = _pool(workers)

    def paths(suffix: str) -> list[str]:  # temp files, unless staged straight away
        return [""] * n if stager is not None else [tmp_name(tmp, suffix) for _ in range(n)]

    write_image = functools.partial(_write_image, compress_level=compress_level, stager=stager)
    write_mask = functools.partial(_write_mask, compress_level=compress_level, stager=stager)
    image_files = _Chunked(pool, workers, write_image, items, paths(tables.IMAGE_SUFFIX))
    mask_files = {
        key: _Chunked(pool, workers, write_mask, list(arr), paths(tables.MASK_SUFFIX))
        for key, arr in mask_arrays.items()
    }
    # Box payloads are GIL-bound Python; build them while the pool deflates.
    box_files: dict[str, Sequence[_File | None]]
    if table_only:
        box_data = {
            key: box_data_json(det, labels, box_domain, box_decimals) for key, det in boxes.items()
        }
        box_files = {key: [None] * n for key in boxes}
    else:
        payloads = {key: box_payloads(det, labels, box_domain) for key, det in boxes.items()}
        box_data = {key: [p["box_data"] for p in ps] for key, ps in payloads.items()}
        box_files = {
            key: _Chunked(
                pool,
                workers,
                write_bytes,
                [tables.payload_json(p) for p in ps],
                [tmp_name(tmp, tables.BOXES_SUFFIX) for _ in ps],
            ).results()
            for key, ps in payloads.items()
        }
    written = image_files.results()
    mask_written = {key: chunks.results() for key, chunks in mask_files.items()}
    out: list[wandb.Image] = []
    classes: dict[Any, Any] = {}
    for i in range(n):
        file, width, height = written[i]
        img_boxes, img_masks = (
            tables.image_layers(items[i]) if isinstance(items[i], wandb.Image) else ({}, {})
        )
        img_boxes.update(
            {
                key: tables.new_boxes2d(key, box_data[key][i], labels, box_files[key][i])
                for key in boxes
            }
        )
        img_masks.update(
            {
                key: tables.new_image_mask(
                    key, mask_arrays[key][i], labels, mask_written[key][i], keep_mask_data
                )
                for key in masks
            }
        )
        out.append(
            tables.new_image(
                file,
                width,
                height,
                img_boxes,
                img_masks,
                None if captions is None else captions[i],
                classes,
            )
        )
    return out


def stage_masks(
    masks: SegmentationMasks | np.ndarray,
    class_labels: dict[int, str],
    stager: tables.Stager,
    compress_level: int | None = 1,
    max_workers: int | None = None,
) -> _Chunked[_File]:
    """Start PNG-encoding a batch of class maps on the encoder pool, straight into
    ``stager``'s artifact: what :func:`build_images` does for one mask layer, without the
    media objects (for a :class:`fastevalcb.tables.LayeredImages` column).

    ``max_workers`` defaults to one thread fewer than the cores: the caller goes on with
    the rest of its batch (metrics, table text) on the last one, and ``results()`` waits.

    Returns:
        Pending files: ``.results()`` is one ``(staging path, sha256 hex, size)`` per mask.
    """
    arr = as_mask_batch(masks, class_labels)
    workers = max_workers or max(1, (os.cpu_count() or 1) - 1)
    write_mask = functools.partial(_write_mask, compress_level=compress_level, stager=stager)
    return _Chunked(_pool(workers), workers, write_mask, list(arr), [""] * len(arr))


def detection_images(
    images: Any,
    predictions: PackedDetections,
    class_labels: dict[int, str],
    ground_truth: PackedDetections | None = None,
    **kwargs: Any,
) -> list[wandb.Image]:
    """``wandb.Image`` per image with "predictions" (and "ground_truth") box layers.

    Args:
        images: as in :func:`build_images`.
        predictions: packed xyxy pixel boxes with scores.
        class_labels: ``{class_id: name}``.
        ground_truth: optional packed boxes (scores ignored if present).
        **kwargs: forwarded to :func:`build_images` (``compress_level``, ``captions``, ...).
    """
    boxes = {"predictions": predictions}
    if ground_truth is not None:
        boxes["ground_truth"] = PackedDetections(
            ground_truth.offsets, ground_truth.xyxy, ground_truth.class_id, None
        )
    return build_images(images, boxes=boxes, class_labels=class_labels, **kwargs)


def segmentation_images(
    images: Any,
    predictions: SegmentationMasks | np.ndarray,
    class_labels: dict[int, str],
    ground_truth: SegmentationMasks | np.ndarray | None = None,
    overlay_alpha: float | None = None,
    palette: np.ndarray | None = None,
    **kwargs: Any,
) -> list[wandb.Image]:
    """``wandb.Image`` per image with "predictions" (and "ground_truth") mask layers.

    Args:
        images: ``(B, H, W, 3)`` uint8 (or list / :class:`EncodedImage` list without overlay).
        predictions: :class:`SegmentationMasks` or ``(B, H, W)`` integer class maps.
        class_labels: ``{class_id: name}``.
        ground_truth: optional, same form as ``predictions``.
        overlay_alpha: when set, the image itself is the prediction colours alpha-blended
            over the input (:func:`fastevalcb.kernels.blend_overlay`), pre-rendered for
            viewers that don't draw mask layers.
        palette: ``(C, 3)`` uint8 colours for the overlay; default :func:`default_palette`.
        **kwargs: forwarded to :func:`build_images`.
    """
    masks = {"predictions": predictions}
    if ground_truth is not None:
        masks["ground_truth"] = ground_truth
    if overlay_alpha is not None:
        from fastevalcb.kernels import blend_overlay

        pred = as_mask_batch(predictions, class_labels, "predictions")
        if palette is None:
            palette = default_palette(max(class_labels) + 1)
        images = blend_overlay(np.asarray(images), pred, palette, overlay_alpha)
        masks["predictions"] = pred
    return build_images(images, masks=masks, class_labels=class_labels, **kwargs)
