"""fastevalcb: fast, offline-capable prediction tables for Keras + Weights & Biases.

The public names are imported on first use (PEP 562 ``__getattr__``): ``import fastevalcb``
loads neither Keras, wandb nor numba, and ``import fastevalcb.errors`` loads no other module
of the package, so every module may import the leaf :mod:`fastevalcb.errors` without a cycle.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "WandbEvalCallback": "fastevalcb.callback",
    "DataTableRef": "fastevalcb.callback",
    "FastEvalWarning": "fastevalcb.errors",
    "FastEvalInputError": "fastevalcb.errors",
    "FastEvalWorkerError": "fastevalcb.errors",
    "BatchedPredictor": "fastevalcb.predictor",
    "PredictionBatch": "fastevalcb.predictor",
    "ColumnarTable": "fastevalcb.tables",
    "TableSchemaError": "fastevalcb.tables",
    "ClassificationEvalCallback": "fastevalcb.tasks",
    "DetectionEvalCallback": "fastevalcb.tasks",
    "SegmentationEvalCallback": "fastevalcb.tasks",
}

__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """A public name from its module, or a submodule (``fastevalcb.tables``), on first use."""
    module = _EXPORTS.get(name)
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif importlib.util.find_spec(f"{__name__}.{name}") is not None:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
