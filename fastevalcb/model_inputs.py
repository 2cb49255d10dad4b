"""The model's declared inputs, and whether a source's batches fit them.

Keras keeps a model's input structure in private attributes (``model._inputs_struct``;
``keras.Sequential`` wraps a functional model in ``model._functional``); this module is the
one place fastevalcb reads them, falling back to the public ``model.inputs``. A model that
declares no inputs (a subclassed model never called) is not checked.
"""

from __future__ import annotations

from typing import Any

from fastevalcb.sources import named_leaves


def model_input_structure(model: Any) -> Any:
    """The model's declared inputs (structure of KerasTensors), or ``None`` if undeclared."""
    struct = getattr(model, "_inputs_struct", None)
    if struct is None:
        functional = getattr(model, "_functional", None)  # keras.Sequential wraps one
        struct = getattr(functional, "_inputs_struct", None)
    if struct is None:
        try:
            inputs = model.inputs
        except (AttributeError, ValueError):
            return None
        if not inputs:
            return None
        struct = inputs[0] if len(inputs) == 1 else list(inputs)
    if isinstance(struct, (list, tuple)) and len(struct) == 1:
        struct = struct[0]
    return struct


def check_inputs(x_spec: Any, model: Any) -> None:
    """Check a source's per-sample input specs against the model's declared inputs.

    Args:
        x_spec: structure of :class:`SampleSpec` (from :meth:`Source.x_spec`).
        model: a Keras model; models that do not declare inputs are not checked.

    Raises:
        ValueError: naming the input, the expected shape (batch dim ``None``) and the shape
            the source provides.
    """
    expected = model_input_structure(model)
    if expected is None:
        return
    got = named_leaves(x_spec, "x")
    if isinstance(expected, dict) and isinstance(x_spec, dict):
        missing = sorted(set(expected) - set(x_spec))
        if missing:
            raise ValueError(
                f"model expects inputs {sorted(expected)}, source x has keys {sorted(x_spec)}"
            )
        want = [(f"x[{k!r}]", expected[k]) for k in sorted(expected)]
        got = [(f"x[{k!r}]", x_spec[k]) for k in sorted(expected)]
    else:
        want = named_leaves(expected, "x")
    if len(want) != len(got):
        raise ValueError(f"model expects {len(want)} input(s), source x provides {len(got)}")
    for (name, tensor), (_, spec) in zip(want, got):
        want_shape = tuple(tensor.shape)
        got_shape = (None,) + tuple(spec.shape)
        same_rank = len(want_shape) == len(got_shape)
        if not same_rank or any(
            w is not None and g is not None and w != g for w, g in zip(want_shape, got_shape)
        ):
            raise ValueError(
                f"input {name}: model expects shape {want_shape}, source provides batches of "
                f"shape {got_shape} (rank {len(got_shape)} vs expected rank {len(want_shape)})"
            )
