"""Ready-made callbacks: validation data + class names in, W&B tables out, no subclass."""

from fastevalcb.tasks._base import TaskEvalCallback
from fastevalcb.tasks.classification import ClassificationEvalCallback
from fastevalcb.tasks.detection import DetectionEvalCallback
from fastevalcb.tasks.segmentation import SegmentationEvalCallback

__all__ = [
    "ClassificationEvalCallback",
    "DetectionEvalCallback",
    "SegmentationEvalCallback",
    "TaskEvalCallback",
]
