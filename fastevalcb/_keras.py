"""Which Keras a model belongs to: Keras 3 (``keras``) or Keras 2 (``tf_keras``).

fastevalcb picks the Keras **per model**, when the callback meets it (``set_model``), not per
import: a process may hold both (``import tf_keras`` next to ``import keras``, or
``TF_USE_LEGACY_KERAS=1`` routing ``tf.keras`` to tf_keras while ``keras`` stays Keras 3), and
the model is the one thing that says which ``fit`` loop drives the callback. The callback base
(``fastevalcb.callback.WandbEvalCallback``) is Keras 3's ``Callback`` and also answers the
questions tf_keras' ``CallbackList`` asks (:func:`implements_batch_hooks`); everything
model-dependent (``floatx``, ``Progbar``) comes from :func:`of_model`. A model of neither
Keras is refused with a ``TypeError`` naming what it is: nothing mixes the two silently.

tf_keras is never imported here: a tf_keras model can only exist once its module is loaded,
so ``sys.modules`` tells whether to look at it at all.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from fastevalcb.errors import FastEvalInputError

TF_KERAS = "tf_keras"

# The batch hooks each Keras asks about before deciding whether to call them at all.
TRAIN_BATCH_HOOKS = ("on_batch_begin", "on_batch_end", "on_train_batch_begin", "on_train_batch_end")
TEST_BATCH_HOOKS = ("on_test_batch_begin", "on_test_batch_end")
PREDICT_BATCH_HOOKS = ("on_predict_batch_begin", "on_predict_batch_end")


def keras3() -> ModuleType:
    """The Keras 3 module (always installed: TensorFlow >= 2.16 depends on it)."""
    import keras

    return keras


def loaded_tf_keras() -> ModuleType | None:
    """The ``tf_keras`` module if something already imported it, else ``None``."""
    return sys.modules.get(TF_KERAS)


def of_model(model: Any) -> ModuleType:
    """The Keras module (``keras`` or ``tf_keras``) whose ``Model`` ``model`` is.

    Raises:
        TypeError: ``model`` is neither a Keras 3 nor a tf_keras model.
    """
    keras = keras3()
    if isinstance(model, keras.Model):
        return keras
    tf_keras = loaded_tf_keras()
    if tf_keras is not None and isinstance(model, tf_keras.Model):
        return tf_keras
    raise TypeError(
        "fastevalcb needs a Keras 3 model (keras.Model) or a Keras 2 model (tf_keras.Model, "
        f"e.g. tf.keras with TF_USE_LEGACY_KERAS=1), got {type(model).__module__}."
        f"{type(model).__qualname__}"
    )


# Backends the compiled predict step (BatchedPredictor, the task callbacks) runs on.
STEP_BACKENDS = ("tensorflow", "jax")


def backend_of(model: Any) -> str:
    """The backend that runs ``model``: ``"tensorflow"`` for tf_keras models, else Keras 3's
    backend (``KERAS_BACKEND``: ``"tensorflow"``, ``"jax"``, ``"torch"``...)."""
    if of_model(model) is not keras3():
        return "tensorflow"
    return keras3().backend.backend()


def check_backend(backend: str, what: str) -> None:
    """Refuse a backend the compiled predict step does not run on.

    Decided from the name alone, so it is testable without the backend installed.

    Raises:
        FastEvalInputError: ``backend`` is not in :data:`STEP_BACKENDS`; the message names
            it, the backends that work, and the drop-in base, which works on any backend.
    """
    if backend in STEP_BACKENDS:
        return
    raise FastEvalInputError(
        f"{what} runs Keras models on the TensorFlow and JAX backends; this Keras runs on "
        f"{backend!r} (KERAS_BACKEND={backend}), which its compiled predict step does not "
        "support. Set KERAS_BACKEND=jax or KERAS_BACKEND=tensorflow before keras is "
        "imported, or subclass the drop-in fastevalcb.WandbEvalCallback (your own "
        "add_ground_truth / add_model_predictions), which works on any backend."
    )


def is_float_dtype(dtype: Any) -> bool:
    """Whether a dtype (numpy, TensorFlow, JAX) is floating, bfloat16 included."""
    if isinstance(dtype, type):  # np.float32, jnp.bfloat16: scalar types, not dtypes
        import numpy as np

        dtype = np.dtype(dtype)
    name = getattr(dtype, "name", None) or str(dtype)
    return name.startswith(("float", "bfloat"))


def ops_for(tensor: Any) -> Any:
    """The ops namespace for on-device post-processing of ``tensor``: ``keras.ops``.

    One exception: a TensorFlow tensor while Keras 3 runs another backend (a tf_keras
    model next to ``KERAS_BACKEND=jax``), which ``keras.ops`` cannot take. Then the
    TensorFlow twins of the few ``keras.ops`` the tasks' post-processing uses, under the
    same names, so that code stays one path.
    """
    keras = keras3()
    if keras.backend.backend() == "tensorflow" or not type(tensor).__module__.startswith(
        "tensorflow"
    ):
        return keras.ops
    return _tf_ops()


def _tf_ops() -> Any:
    from types import SimpleNamespace

    import tensorflow as tf

    return SimpleNamespace(
        all=lambda x, axis=None: tf.reduce_all(x, axis=axis),
        argmax=lambda x, axis=None: tf.argmax(x, axis=axis),
        cast=tf.cast,
        isfinite=tf.math.is_finite,
        logical_and=tf.logical_and,
        max=tf.reduce_max,
        min=tf.reduce_min,
        ones=tf.ones,
        reshape=tf.reshape,
        round=tf.round,
        shape=tf.shape,
        where=tf.where,
    )


def name_of(module: ModuleType) -> str:
    """``"Keras 3.x"`` or ``"tf_keras"``, for messages."""
    return "tf_keras" if module.__name__ == TF_KERAS else f"Keras {module.__version__}"


def floatx(model: Any) -> str:
    """The float dtype name (``"float32"``...) the model's Keras computes in."""
    return of_model(model).backend.floatx()


def progbar(model: Any, target: int, unit_name: str) -> Any:
    """A ``Progbar`` of the model's Keras (its ``fit`` progress bar's look)."""
    return of_model(model).utils.Progbar(target, unit_name=unit_name)


def tree() -> ModuleType:
    """Keras 3's ``keras.tree`` (flatten / map_structure with dict keys sorted).

    Used for both Kerases: it is a structure library, independent of the model, and its
    order is ``tf.nest``'s (which tf_keras uses), so sample and output order agree.
    """
    return keras3().tree


def unpack_x_y_sample_weight(data: Any) -> tuple:
    """``(x, y, sample_weight)`` from one element: the rule both Kerases' ``fit`` applies.

    (``x`` alone, ``(x,)``, ``(x, y)`` or ``(x, y, sample_weight)``; a list counts as a
    tuple. Identical in Keras 3 and tf_keras.)
    """
    return keras3().utils.unpack_x_y_sample_weight(data)


def sequence_types() -> tuple[type, ...]:
    """Index-addressable datasets: ``keras.utils.PyDataset``, and ``tf_keras.utils.Sequence``
    when tf_keras is loaded."""
    types: tuple[type, ...] = (keras3().utils.PyDataset,)
    tf_keras = loaded_tf_keras()
    if tf_keras is not None:
        types += (tf_keras.utils.Sequence,)
    return types


def implements_batch_hooks(callback: Any, hooks: tuple[str, ...]) -> bool:
    """Whether ``callback`` overrides any of ``hooks`` (instance or class), for tf_keras.

    tf_keras' ``CallbackList`` calls batch hooks, and turns off its fast path, only for
    callbacks whose ``_implements_*_batch_hooks()`` says so. A hook counts as implemented
    unless it is still Keras 3's ``Callback`` method: the same rule Keras 3 applies with its
    ``is_default`` marks, so per-N-batch logging, which assigns ``on_train_batch_end`` on
    the instance, is the only thing that turns the hooks on under either Keras.
    """
    base = keras3().callbacks.Callback
    for name in hooks:
        method = getattr(callback, name, None)
        if method is None:
            continue
        if getattr(method, "__func__", None) is not getattr(base, name, None):
            return True
    return False


def last_step_of_execution(model: Any, batch: int) -> int:
    """The epoch's last step (0-based) done when ``on_train_batch_end(batch)`` is called.

    With ``steps_per_execution=k`` a hook runs once per k steps. tf_keras and Keras >= 3.11
    pass that execution's last step; Keras 3.6-3.10 pass its first, so ``k - 1`` is added
    (capped at the epoch's last step by the caller, which knows ``steps``).
    """
    if of_model(model) is not keras3():
        return batch
    version = tuple(int(p) for p in keras3().__version__.split(".")[:2])
    k = getattr(model, "steps_per_execution", 1) or 1
    return batch + int(k) - 1 if version < (3, 11) else batch
