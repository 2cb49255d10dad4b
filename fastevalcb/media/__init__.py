"""Task predictions -> ``wandb.Image`` payloads (boxes, masks), with threaded PNG encoding.

Public entry points:

* :func:`build_images` / :func:`detection_images` / :func:`segmentation_images`:
  batches -> ``list[wandb.Image]``.
* :func:`encode_images`: encode fixed images once, reuse them every epoch.
* :func:`stage_masks`: a batch of class maps' PNGs straight into an artifact (no objects).
* :func:`box_payload` / :func:`box_payloads`: the stock ``boxes=`` dicts, built fast.
* :func:`encode_png`: the GIL-releasing PNG encoder.
"""

from fastevalcb.media.boxes import box_payload, box_payloads
from fastevalcb.media.images import (
    EncodedImage,
    build_images,
    detection_images,
    encode_images,
    segmentation_images,
    stage_masks,
)
from fastevalcb.media.masks import default_palette
from fastevalcb.media.png import encode_png

__all__ = [
    "EncodedImage",
    "box_payload",
    "box_payloads",
    "build_images",
    "default_palette",
    "detection_images",
    "encode_images",
    "encode_png",
    "segmentation_images",
    "stage_masks",
]
