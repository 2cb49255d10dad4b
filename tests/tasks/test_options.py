"""The task callbacks' keyword options: all in the signature, an unknown one named early."""

from __future__ import annotations

import inspect
import pydoc

import numpy as np
import pytest

from fastevalcb import (
    ClassificationEvalCallback,
    DetectionEvalCallback,
    SegmentationEvalCallback,
)
from fastevalcb.tasks._base import TaskEvalCallback

TASKS = [ClassificationEvalCallback, DetectionEvalCallback, SegmentationEvalCallback]
BASE = [
    name
    for name, p in inspect.signature(TaskEvalCallback.__init__).parameters.items()
    if p.kind is p.KEYWORD_ONLY
]


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.__name__)
def test_every_option_is_in_the_signature_and_help(cls):
    params = inspect.signature(cls).parameters
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values())
    assert set(BASE) <= set(params)
    assert params["max_queue_mb"].default == 256 and params["max_queue_mb"].annotation
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "log_every_n_batches" in text and "multi_worker_eval" in text


@pytest.mark.parametrize("cls", TASKS, ids=lambda c: c.__name__)
def test_an_unknown_keyword_names_the_closest_valid_one(cls):
    with pytest.raises(
        TypeError,
        match=r"unexpected keyword argument 'max_sample'; did you "
        r"mean 'max_samples'\?",
    ):
        cls((np.zeros((2, 8, 8, 3)), np.zeros(2)), ["a", "b"], max_sample=3)


def test_a_users_subclass_keeps_its_parents_options(offline_run):
    class Mine(ClassificationEvalCallback):
        def __init__(self, validation_data, class_names, *, note="", **options):
            self.note = note
            super().__init__(validation_data, class_names, **options)

    params = inspect.signature(Mine).parameters
    assert {"note", "top_k", "max_samples"} <= set(params)
    cb = Mine((np.zeros((2, 8, 8, 3)), np.zeros(2)), ["a", "b"], note="x", top_k=2, verbose=0)
    assert (cb.note, cb.top_k) == ("x", 2)
    with pytest.raises(TypeError, match="did you mean 'top_k'"):
        Mine((np.zeros((2, 8, 8, 3)), np.zeros(2)), ["a", "b"], topk=2)
