"""fastevalcb: fast, offline-capable prediction tables for Keras + Weights & Biases."""

from fastevalcb.callback import FastEvalCallback, WandbEvalCallback

__all__ = ["WandbEvalCallback", "FastEvalCallback"]
__version__ = "0.1.0"
