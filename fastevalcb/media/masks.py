"""Segmentation masks -> the mask payload ``wandb.Image(masks={key: payload})`` takes.

The stock payload is ``{"mask_data": (H, W) integer array, "class_labels": {id: name}}``;
wandb writes ``mask_data`` as a mode-"L" PNG. Here masks arrive as one ``(B, H, W)`` uint8
batch, are checked once per batch (not once per image) and encoded on worker threads
by :func:`fastevalcb.media.build_images`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fastevalcb.kernels._common import check_class_ids
from fastevalcb.types import SegmentationMasks


def default_palette(num_classes: int) -> np.ndarray:
    """Distinct colours (the PASCAL VOC bit-interleaving scheme).

    Returns:
        ``(num_classes, 3)`` uint8, class 0 black.
    """
    ids = np.arange(num_classes)
    pal = np.zeros((num_classes, 3), dtype=np.int64)
    for shift in range(8):
        for ch in range(3):
            pal[:, ch] |= ((ids >> (3 * shift + ch)) & 1) << (7 - shift)
    return pal.astype(np.uint8)


def as_mask_batch(
    masks: SegmentationMasks | npt.ArrayLike, class_labels: dict[int, str], name: str = "masks"
) -> np.ndarray:
    """Validate a batch of class maps against ``class_labels`` and return uint8.

    Args:
        masks: :class:`SegmentationMasks`, or ``(B, H, W)`` integer array.
        class_labels: ``{class_id: name}``; every id present in ``masks`` needs a label.
        name: argument name for messages.

    Returns:
        C-contiguous ``(B, H, W)`` uint8.

    Raises:
        ValueError: on a bad shape/dtype or a class id without a label.
    """
    arr = masks.masks if isinstance(masks, SegmentationMasks) else np.asarray(masks)
    if arr.ndim != 3:
        raise ValueError(f"{name} must have shape (B, H, W), got {tuple(arr.shape)}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.dtype != np.uint8:
        check_class_ids(arr, 256, name)
        arr = arr.astype(np.uint8)
    arr = np.ascontiguousarray(arr)
    if arr.size and not all(c in class_labels for c in range(int(arr.max()) + 1)):
        present = np.flatnonzero(np.bincount(arr.reshape(-1), minlength=256))
        missing = [int(c) for c in present if int(c) not in class_labels]
        if missing:
            keys = sorted(class_labels)
            valid = (
                f"in [0, {len(keys)})"
                if keys == list(range(len(keys)))
                else f"one of the class_labels keys {keys[:20]}"
            )
            raise ValueError(
                f"{name} contains unknown class id {missing[0]}; class ids must be {valid}"
            )
    return arr
