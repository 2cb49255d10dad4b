"""fastevalcb's exceptions and warnings: a leaf module that imports nothing of the package."""

from __future__ import annotations


class FastEvalWarning(UserWarning):
    """A logging step failed, or a wandb fast path fell back to wandb's public API; training
    goes on (pass ``strict=True`` to raise logging failures)."""


class FastEvalInputError(ValueError):
    """The validation data, class names or model outputs do not fit the callback.

    Raised at construction or at train begin, before the first epoch, whatever
    ``strict`` says: it is a configuration error, not a transient logging failure.
    """


class FastEvalWorkerError(RuntimeError):
    """Another worker failed a stage that this one finished: raised here too, at the same
    point, so no worker waits in a collective that will never come (multi-worker training,
    see :mod:`fastevalcb.distributed`)."""


__all__ = ["FastEvalInputError", "FastEvalWarning", "FastEvalWorkerError"]
