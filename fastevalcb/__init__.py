"""fastevalcb: fast, offline-capable prediction tables for Keras + Weights & Biases."""

from typing import Any

from fastevalcb.callback import DataTableRef, FastEvalCallback, WandbEvalCallback
from fastevalcb.errors import FastEvalInputError, FastEvalWarning
from fastevalcb.predictor import BatchedPredictor, PredictionBatch
from fastevalcb.tables import ColumnarTable, TableSchemaError

_TASKS = ("ClassificationEvalCallback", "DetectionEvalCallback", "SegmentationEvalCallback")

__all__ = [
    "WandbEvalCallback",
    "FastEvalCallback",
    "FastEvalWarning",
    "FastEvalInputError",
    "DataTableRef",
    "BatchedPredictor",
    "PredictionBatch",
    "ColumnarTable",
    "TableSchemaError",
    *_TASKS,
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The task callbacks pull in numba and the media stack: imported on first use.
    if name in _TASKS:
        from fastevalcb import tasks

        return getattr(tasks, name)
    raise AttributeError(f"module 'fastevalcb' has no attribute {name!r}")
