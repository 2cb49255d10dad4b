"""What a task callback knows at train begin, built once and read by every log.

* the checks of what the user passed: class names (:func:`check_class_names`), class ids
  (:func:`check_class_range`), images (:class:`ImageScaler` ``.displayable``), and a model
  whose preprocessor resizes to another aspect ratio (:func:`check_resize`);
* :class:`ImageScaler`: one display rule for every batch of images;
* :class:`EvalSet`: sample ids, validated targets and the data table's image files, built
  while the data table is written; every pred version reads it instead of re-validating,
  and refuses a source that comes back in another order.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastevalcb import tables
from fastevalcb.errors import FastEvalInputError
from fastevalcb.sources import flatten
from fastevalcb.types import PackedDetections


def check_class_names(class_names: Any, max_classes: int | None = None) -> tuple[str, ...]:
    """A non-empty sequence of unique, non-empty strings (at most ``max_classes``)."""
    if isinstance(class_names, (str, bytes)) or not isinstance(class_names, Sequence):
        raise FastEvalInputError(
            f"class_names must be a list of str, got {type(class_names).__name__}: "
            f"{class_names!r:.80}"
        )
    names = tuple(class_names)
    if not names:
        raise FastEvalInputError("class_names must name at least one class, got []")
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise FastEvalInputError(f"class_names must be non-empty str, got {bad[:5]!r}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise FastEvalInputError(f"class_names has duplicates: {dupes}")
    if max_classes is not None and len(names) > max_classes:
        raise FastEvalInputError(
            f"at most {max_classes} classes are supported here, got {len(names)}"
        )
    return names


def check_class_range(
    ids: np.ndarray, num_classes: int, what: str, index: np.ndarray, allowed: tuple[int, ...] = ()
) -> None:
    """Raise naming the first sample whose id is outside ``[0, num_classes)``."""
    bad = (ids < 0) | (ids >= num_classes)
    for value in allowed:
        bad &= ids != value
    if np.any(bad):
        where = np.argwhere(bad)[0]
        extra = f" or {list(allowed)}" if allowed else ""
        raise FastEvalInputError(
            f"{what} of sample {int(index[where[0]])} is {int(ids[tuple(where)])}, outside "
            f"class_names ({num_classes} classes: ids 0..{num_classes - 1}{extra})"
        )


def label_fingerprints(y: Any, n: int) -> list[int]:
    """One crc32 per sample over all label arrays' rows (to spot a reordered source)."""
    leaves = [np.ascontiguousarray(np.asarray(leaf)) for leaf in flatten(y)]
    out = []
    for i in range(n):
        crc = 0
        for leaf in leaves:
            crc = zlib.crc32(leaf[i].tobytes(), crc)
        out.append(crc)
    return out


class ImageScaler:
    """Batches of images -> ``(B, H, W[, C])`` uint8 for display, one rule for all batches.

    uint8 passes through. For other dtypes the rule is fixed by the first batch seen:
    values within [0, 1] are scaled by 255, within [-1, 1] mapped to [0, 255], anything
    else clipped to [0, 255]; then rounded. (``wandb.Image`` itself only casts with
    ``astype(uint8)``, which turns [0, 1] floats black.) Pass uint8 images to decide.
    """

    def __init__(self) -> None:
        self.scale: tuple[float, float] | None = None  # (offset, factor)

    @staticmethod
    def displayable(x: Any, what: str = "validation images") -> np.ndarray:
        """``x`` as an array of a shape that can be shown (one channel squeezed), unscaled."""
        arr = np.asarray(x)
        if arr.ndim == 4 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (3, 4)):
            raise FastEvalInputError(
                f"{what} must have shape (N, H, W), (N, H, W, 1), (N, H, W, 3) or "
                f"(N, H, W, 4), got {tuple(arr.shape)}"
            )
        return arr

    def __call__(self, x: Any, what: str = "validation images") -> np.ndarray:
        arr = self.displayable(x, what)
        if arr.dtype == np.uint8:
            return arr
        arr = arr.astype(np.float32, copy=False)
        if self.scale is None:
            low, high = float(np.min(arr)), float(np.max(arr))
            if low >= 0 and high <= 1:
                self.scale = (0.0, 255.0)
            elif low >= -1 and high <= 1:
                self.scale = (1.0, 127.5)
            else:
                self.scale = (0.0, 1.0)
        offset, factor = self.scale
        return np.clip(np.rint((arr + offset) * factor), 0, 255).astype(np.uint8)


@dataclass
class EvalSet:
    """What every log reads, built once per run while the data table is written.

    Attributes:
        ids: ``(N,)`` int64 global sample ids, increasing (the source's order).
        images: the data table's image file per sample (arrays, no object per sample):
            pred rows show them by reference.
        masks: the data table's ground-truth mask file per sample, for tasks whose data
            table has a mask layer (segmentation), else None.
        targets: the task's validated targets of all ``N`` samples, concatenated
            (``(N,)`` class ids, packed boxes), or None when the task reads them from each
            batch instead (segmentation masks: pixels are never held for the whole set).
        first_ids, first_fingerprints: the first batch's ids and label crc32s, to refuse
            a source that comes back in another order.
    """

    ids: np.ndarray
    images: tables.MediaFiles | None
    targets: Any
    first_ids: np.ndarray
    first_fingerprints: list[int]
    masks: tables.MediaFiles | None = None

    def rows(self, index: np.ndarray) -> slice:
        """The positions of a batch's (contiguous, increasing) sample ids."""
        start = int(np.searchsorted(self.ids, index[0])) if len(index) else 0
        stop = start + len(index)
        if stop > len(self.ids) or not np.array_equal(self.ids[start:stop], index):
            raise FastEvalInputError(
                f"predicted samples {index[:5].tolist()}... are not a run of the data table's "
                "samples: the source gives other samples on this pass than when the data "
                "table was built"
            )
        return slice(start, stop)

    def check_same_samples(self, index: np.ndarray, y: Any) -> None:
        """The first batch of a pass must be the data table's first batch, same labels.

        Pred rows show the data table's image for their id: a source that comes back in
        another order (a shuffled ``tf.data``) would pair images with other samples'
        predictions, so it is refused.
        """
        index = np.asarray(index)
        n = min(len(index), len(self.first_ids))
        same = np.array_equal(index[:n], self.first_ids[:n]) and (
            label_fingerprints(y, n) == self.first_fingerprints[:n]
        )
        if not same:
            raise FastEvalInputError(
                "the validation source came back with other samples or labels than when the "
                "data table was built: it changes order or content between passes (a "
                "shuffled or randomly augmented tf.data?). Pass a deterministic source: no "
                ".shuffle() (or shuffle once with reshuffle_each_iteration=False) and no "
                "random augmentation."
            )


def concat_targets(parts: list[Any]) -> Any:
    """One batch of validated targets per part -> the targets of all samples."""
    if isinstance(parts[0], PackedDetections):
        return type(parts[0]).concat(parts)  # detection's targets carry crowd flags
    return np.concatenate(parts)


def take_targets(targets: Any, rows: slice) -> Any:
    """The targets of ``rows`` (a batch's positions in the :class:`EvalSet`)."""
    if isinstance(targets, PackedDetections):
        return targets.slice(rows.start, rows.stop)
    return targets[rows]


def check_resize(
    model: Any, model_hw: tuple[int, int] | None, image_hw: tuple[int, int] | None
) -> None:
    """Predictions are at the model's resolution; the tables show the user's images.

    A preprocessor that resizes (KerasHub image converters) is undone by scaling boxes
    and nearest-resizing masks, which is exact for a plain resize. One that crops or
    pads to another aspect ratio cannot be undone that way: refused here.

    Args:
        model: the model (its ``preprocessor.image_converter.resizing`` is read, if any).
        model_hw: ``(H, W)`` the model sees, or None when unknown.
        image_hw: ``(H, W)`` of the validation images, or None when unknown.

    Raises:
        FastEvalInputError: the aspect ratios differ and the converter crops or pads.
    """
    if model_hw is None or image_hw is None or model_hw == image_hw:
        return
    same_aspect = abs(model_hw[0] * image_hw[1] - model_hw[1] * image_hw[0]) < 1e-6
    resizing = getattr(
        getattr(getattr(model, "preprocessor", None), "image_converter", None),
        "resizing",
        None,
    )
    reshapes = [
        name
        for name in ("crop_to_aspect_ratio", "pad_to_aspect_ratio")
        if getattr(resizing, name, False)
    ]
    if not same_aspect and reshapes:
        raise FastEvalInputError(
            f"the model's preprocessor resizes the {image_hw[0]}x{image_hw[1]} validation "
            f"images to {model_hw[0]}x{model_hw[1]} with {reshapes[0]}=True, so its "
            "predictions cannot be mapped back onto the images the tables show. Pass "
            f"validation images with the model's aspect ratio ({model_hw[0]}:"
            f"{model_hw[1]}), or an image converter with {reshapes[0]}=False"
        )
