"""Ready-made callbacks: validation data + class names in, W&B tables out, no subclass."""

from fastevalcb.tasks._base import TaskEvalCallback
from fastevalcb.tasks.classification import ClassificationEvalCallback

__all__ = ["ClassificationEvalCallback", "TaskEvalCallback"]
