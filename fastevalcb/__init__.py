"""fastevalcb: fast, offline-capable prediction tables for Keras + Weights & Biases."""

from fastevalcb.callback import DataTableRef, FastEvalCallback, FastEvalWarning, WandbEvalCallback
from fastevalcb.predictor import BatchedPredictor, PredictionBatch
from fastevalcb.tables import ColumnarTable, TableSchemaError

__all__ = [
    "WandbEvalCallback",
    "FastEvalCallback",
    "FastEvalWarning",
    "DataTableRef",
    "BatchedPredictor",
    "PredictionBatch",
    "ColumnarTable",
    "TableSchemaError",
]
__version__ = "0.1.0"
