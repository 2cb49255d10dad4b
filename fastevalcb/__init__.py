"""fastevalcb: fast, offline-capable prediction tables for Keras + Weights & Biases."""

from fastevalcb.callback import DataTableRef, FastEvalCallback, FastEvalWarning, WandbEvalCallback
from fastevalcb.tables import ColumnarTable, TableSchemaError

__all__ = [
    "WandbEvalCallback",
    "FastEvalCallback",
    "FastEvalWarning",
    "DataTableRef",
    "ColumnarTable",
    "TableSchemaError",
]
__version__ = "0.1.0"
