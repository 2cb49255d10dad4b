"""Placeholder while the core callback is being written (replaced in the next commit)."""


class WandbEvalCallback:  # pragma: no cover - replaced shortly
    pass


FastEvalCallback = WandbEvalCallback
