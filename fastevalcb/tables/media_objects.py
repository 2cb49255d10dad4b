"""wandb media objects (``Image``, ``BoundingBoxes2D``, ``ImageMask``) built from files we
already wrote, and what we read back from them."""

from __future__ import annotations

from typing import Any

import wandb
from wandb.sdk.data_types.base_types.media import Media
from wandb.sdk.data_types._private import MEDIA_TMP
from wandb.sdk.data_types.helper_types.bounding_boxes_2d import BoundingBoxes2D
from wandb.sdk.data_types.helper_types.classes import Classes
from wandb.sdk.data_types.helper_types.image_mask import ImageMask
from wandb.sdk.lib import json_util
from wandb.util import JSONEncoderUncompressed


def release_pixels(cell: Any) -> None:
    """Drop the pixel arrays a logged image keeps (they live in its media files now)."""
    if isinstance(cell, wandb.Image):
        cell._free_ram()  # wandb-internal
        for mask in (cell._masks or {}).values():  # wandb-internal
            val = getattr(mask, "_val", None)
            if isinstance(val, dict) and "mask_data" in val:
                mask._val = {k: v for k, v in val.items() if k != "mask_data"}


# ---------------------------------------------------------------------------------
# Media objects built from files we already wrote
# ---------------------------------------------------------------------------------
# ``wandb.Image(array, boxes=..., masks=...)`` does all its work eagerly and serially in
# the constructor (PIL PNG encode holding the GIL, per-box validation, a JSON temp file,
# a PNG per mask). The functions below build the *same* objects (same classes, same
# attributes, same temp-file layout in wandb's media staging directory) from files
# ``fastevalcb.media`` wrote and hashed on worker threads, so wandb binds, copies and
# serializes them as if it had made them itself. Attribute names mirror wandb 0.31
# (``Image._initialize_from_data`` / ``_set_initialization_meta``, ``JSONMetadata``,
# ``ImageMask.__init__``, ``Media._set_file``); ``tests/test_tables.py`` compares every
# attribute with a stock-built object.

FileInfo = tuple  # (path, sha256 hex, size in bytes)

BOXES_SUFFIX = "." + BoundingBoxes2D.type_name() + ".json"  # ".boxes2D.json"
MASK_SUFFIX = "." + ImageMask.type_name() + ".png"  # ".mask.png"
IMAGE_SUFFIX = ".png"
IMAGE_DIR = wandb.Image.get_media_subdir()  # "media/images": where artifacts keep images
MASK_DIR = ImageMask.get_media_subdir()  # "media/images/mask"


def media_tmp_dir() -> str:
    """wandb's media staging directory, where wandb.Image writes its temp files."""
    return MEDIA_TMP.name


def payload_json(payload: dict) -> bytes:
    """The exact bytes ``JSONMetadata.__init__`` writes for ``payload`` (utf-8 JSON text).

    wandb 0.31 serializes with ``pydantic_core.to_json`` (compact separators, NaN/Infinity
    constants, non-ASCII kept), via ``util.json_dump_uncompressed``; we call the same code.
    """
    return json_util.dumps(payload, cls=JSONEncoderUncompressed).encode("utf-8")


def _set_file(media: Media, file: FileInfo, extension: str | None) -> None:
    """``Media._set_file(path, is_tmp=True, extension)`` with the hash already computed."""
    media._path, media._sha256, media._size = file
    media._is_tmp = True
    media._extension = extension


def file_of(media: Media) -> FileInfo | None:
    """``(path, sha256, size)`` of a file-backed media object, or None."""
    if not media.file_is_set():
        return None
    return media._path, media._sha256, media._size


def image_layers(image: wandb.Image) -> tuple[dict, dict]:
    """The ``(boxes, masks)`` layers of an image, keyed by layer name."""
    return dict(image._boxes or {}), dict(image._masks or {})


def image_size(image: wandb.Image) -> tuple[int, int]:
    """``(width, height)`` of an image."""
    return image._width, image._height


def new_boxes2d(
    key: str, box_data: list, class_labels: dict, file: FileInfo | None
) -> BoundingBoxes2D:
    """A ``BoundingBoxes2D`` whose JSON file ``file`` was already written.

    The file must hold ``json.dumps({"box_data": box_data, "class_labels": class_labels})``
    (the text ``JSONMetadata.__init__`` writes). ``file=None``: no file, for images that
    only go into artifact tables (which inline ``box_data``; ``wandb.log`` needs the file).
    """
    boxes = BoundingBoxes2D.__new__(BoundingBoxes2D)
    Media.__init__(boxes)
    boxes._val = box_data
    if file is not None:
        _set_file(boxes, file, BOXES_SUFFIX)
    boxes._key = key
    boxes._class_labels = class_labels
    return boxes


def new_image_mask(
    key: str, mask, class_labels: dict, file: FileInfo, keep_data: bool = True
) -> ImageMask:
    """An ``ImageMask`` whose PNG ``file`` (mode L, pixels = ``mask``) was already written.

    ``keep_data=False`` does not keep the mask array (wandb only reads it in
    ``ImageMask.__init__``; the file holds the pixels), so memory stays bounded.
    """
    m = ImageMask.__new__(ImageMask)
    Media.__init__(m)
    m._val = ({"mask_data": mask, "class_labels": class_labels} if keep_data
              else {"class_labels": class_labels})
    m._key = key
    _set_file(m, file, MASK_SUFFIX)
    return m


def new_image(
    file: FileInfo,
    width: int,
    height: int,
    boxes: dict[str, BoundingBoxes2D] | None = None,
    masks: dict[str, ImageMask] | None = None,
    caption: str | None = None,
    classes_cache: dict | None = None,
) -> wandb.Image:
    """A ``wandb.Image`` backed by the PNG ``file`` we already wrote.

    Equivalent to ``wandb.Image(pixels, caption=caption, boxes=boxes, masks=masks)``.
    ``classes_cache``: images of one table batch share their ``Classes`` object through it,
    so adding them to the artifact adds the class set once, not once per image (~70 µs).
    """
    img = wandb.Image.__new__(wandb.Image)
    Media.__init__(img, caption=caption)
    img._grouping = None
    img._width = width
    img._height = height
    img._image = None
    img._classes = None
    img._boxes = boxes or None
    img._masks = masks or None
    img._file_type = None
    img.format = "png"
    _set_file(img, file, None)
    total_classes: dict = {}
    for b in (boxes or {}).values():
        total_classes.update(b._class_labels)
    for m in (masks or {}).values():
        total_classes.update(m._val["class_labels"])
    if total_classes:
        key = tuple(total_classes.items())
        classes = None if classes_cache is None else classes_cache.get(key)
        if classes is None:
            classes = Classes([{"id": k, "name": v} for k, v in total_classes.items()])
            if classes_cache is not None:
                classes_cache[key] = classes
        img._classes = classes
    return img
