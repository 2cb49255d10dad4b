"""BatchedPredictor: one cached, compiled, padded, streaming predict step.

The second stage of the pipeline (``source -> predictor -> kernels -> media -> tables``).
A validation source (see :mod:`fastevalcb.sources`) is run through a Keras model in
fixed-size batches the way ``model.predict`` runs it, by a single compiled step traced
once per model: a ``tf.function`` on TensorFlow (Keras 3 or tf_keras), a ``jax.jit`` on
Keras 3's JAX backend (:class:`_JaxStep`: ``predict_step(state, data)`` with the weights
as arguments, read at the start of each pass). Other backends (torch) are refused with a
:class:`~fastevalcb.callback.FastEvalInputError` naming them.

* the step calls ``model.predict_step(data)`` exactly as ``keras.Model.predict`` does:
  ``data`` is the bare ``x``, or ``(x,)`` when ``x`` is itself a tuple / list
  (``keras.utils.pack_x_y_sample_weight``), so models that override ``predict_step``
  (detectors that decode boxes there, calibrated classifiers) give ``predict``'s outputs;
* KerasHub tasks (anything with ``preprocess_samples``, e.g. a ``preprocessor``) have
  each raw batch preprocessed on the host side as ``predict`` maps it over its
  ``tf.data`` pipeline: a separate (never XLA) ``tf.function`` on the CPU, then the step
  runs on the preprocessed batch. Labels and ``return_x`` inputs stay the user's own;
* every batch reaches the step with a static batch size ``B``: the last one is
  zero-padded on the host and the padding rows are dropped from the outputs. One trace
  serves ragged sets, XLA (``jit_compile=True``) compiles one shape, replicas of a
  ``tf.distribute`` strategy get equal shards, and decoders that need a static batch
  (KerasHub's ``NonMaxSuppression``) work;
* an optional ``output_fn`` (``keras.ops``, which serve every backend, or TensorFlow ops
  on TensorFlow: softmax + top-k, argmax, box decode + NMS) and the cast of floating
  outputs to float32 are fused after ``predict_step``, so only small tensors cross to the
  host;
* results stream back as :class:`PredictionBatch` es of host numpy arrays while a
  background thread already computes the next batch (bounded queue, ``prefetch`` deep).

The step is rebuilt (and retraced once) when the model object, its ``preprocessor`` or
its ``prediction_decoder`` changes: a step traced earlier would keep the old ones.

Example::

    predictor = BatchedPredictor(model, (x_val, y_val), batch_size=64, max_samples=512,
                                 output_fn=lambda logits: tf.math.top_k(logits, 5))
    for batch in predictor.iter_batches():
        rows = build_rows(batch.index, batch.outputs, batch.y)   # overlaps the next batch
    probs = predictor.predict_all()                               # outputs only

One module of about 800 lines on purpose: the TensorFlow and JAX steps, the padding
and unpadding of static batches and the streaming thread share one batch contract
(:class:`PredictionBatch`) and are changed together; sources, model-input checks and
image-input discovery live in their own modules.
"""

from __future__ import annotations

import dataclasses
import operator
import queue
import threading
from collections.abc import Callable, Generator, Iterator
from typing import Any

import numpy as np

from fastevalcb import _keras, distributed, image_inputs, model_inputs
from fastevalcb import sources as _sources
from fastevalcb.errors import FastEvalInputError

__all__ = ["BatchedPredictor", "PredictionBatch"]


@dataclasses.dataclass
class PredictionBatch:
    """Predictions for one batch, as host numpy, padding removed.

    Attributes:
        index: `(n,)` int64 global sample ids of the rows, in sample order.
        outputs: numpy arrays with leading dim ``n``, same structure (array / list / dict)
            as the model output, or as ``output_fn``'s output when one is given. Floating
            outputs are float32 unless ``float32_outputs=False``.
        y: labels with leading dim ``n`` (numpy, same structure as the source's ``y``), or
            ``None`` when the source has no labels.
        x: inputs with leading dim ``n`` (numpy, the source's raw inputs, before any
            preprocessor) when ``return_x=True``, else ``None``.
        image_hw: ``(H, W)`` of the image input of ``x`` as the source gives it (what a
            table displays), or ``None`` when no input is image-shaped (see
            :func:`fastevalcb.sources.image_input`) or its size is not static.
        model_hw: ``(H, W)`` of the image input as the model saw it, after the model's
            preprocessor (e.g. a resize to ``(96, 96)``); equals ``image_hw`` for models
            without one. Boxes in model pixels scale to the displayed image by
            ``image_hw / model_hw``; masks are resized from ``model_hw`` to ``image_hw``.
    """

    index: np.ndarray
    outputs: Any
    y: Any = None
    x: Any = None
    image_hw: tuple[int, int] | None = None
    model_hw: tuple[int, int] | None = None

    def __post_init__(self):
        n = self.index.shape[0]
        for name, leaf in _sources.named_leaves(self.outputs, "outputs"):
            if leaf.ndim == 0 or leaf.shape[0] != n:
                raise ValueError(
                    f"{name} must have leading dim {n} (one row per sample), got shape "
                    f"{leaf.shape}; output_fn must return batch-major tensors"
                )

    def __len__(self) -> int:
        return int(self.index.shape[0])


class _Preprocess:
    """A KerasHub task's ``preprocess_samples`` on raw batches, as ``predict`` maps it.

    Runs as its own (never XLA) ``tf.function`` on the CPU, where ``predict``'s
    ``tf.data`` map runs it, on batches of a static ``rows`` size; traced once.

    Attributes:
        data_spec: structure of :class:`~fastevalcb.sources.SampleSpec` of what it
            returns (the ``data`` the step's ``predict_step`` receives).
        trace_count: times it was traced.
    """

    def __init__(self, fn, x_spec, rows):
        import keras
        import tensorflow as tf

        self.trace_count = 0

        @tf.autograph.experimental.do_not_convert
        def preprocess(x):
            self.trace_count += 1
            x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(fn(x))
            return keras.utils.pack_x_y_sample_weight(x, y, sample_weight)

        signature = [_map(lambda s: tf.TensorSpec((rows,) + tuple(s.shape), s.dtype), x_spec)]
        self.fn = tf.function(preprocess, input_signature=signature, reduce_retracing=True)
        with tf.device("/CPU:0"):
            out = self.fn.get_concrete_function().structured_outputs
        self.data_spec = _map(lambda t: _sources.SampleSpec(tuple(t.shape[1:]), t.dtype.name), out)

    def __call__(self, x):
        import tensorflow as tf

        with tf.device("/CPU:0"):
            return self.fn(x)


def preprocess_fn(model: Any) -> Callable[..., Any] | None:
    """The host-side preprocessing ``model.predict`` applies to raw inputs, or ``None``.

    KerasHub tasks (``PipelineModel``) map ``model.preprocess_samples`` over the batched
    inputs of ``predict``; their base versions are the identity when the task has no
    ``preprocessor``, so those are skipped.
    """
    fn = getattr(model, "preprocess_samples", None)
    if not callable(fn):
        return None
    own = getattr(type(model), "preprocess_samples", None)
    base = getattr(own, "__qualname__", "") in (
        "Task.preprocess_samples",
        "PipelineModel.preprocess_samples",
    ) and getattr(own, "__module__", "").startswith("keras_hub")
    if base and getattr(model, "preprocessor", None) is None:
        return None
    preprocess: Callable[..., Any] = fn
    return preprocess


def _model_parts(model: Any) -> tuple[Any, Any]:
    """What a traced step captures besides the model: rebuilt when one changes."""
    return (getattr(model, "preprocessor", None), getattr(model, "prediction_decoder", None))


def _same(parts: tuple[Any, ...], others: tuple[Any, ...]) -> bool:
    return all(a is b for a, b in zip(parts, others))


class _TFStep:
    """The ``tf.function`` step for one TensorFlow model (Keras 3 on TensorFlow, tf_keras):
    traced once, reused for every batch and pass.

    Every call gets ``pad_to`` rows (``B`` rounded up to a multiple of the replicas).
    """

    def __init__(
        self, model, prep, data_spec, pad_to, output_fn, jit_compile, float32_outputs, local=False
    ):
        import tensorflow as tf

        self.model = model
        self.parts = _model_parts(model)
        self.prep: _Preprocess | None = prep
        self.local = local
        self.trace_count = 0
        strategy = model.distribute_strategy
        self.num_replicas = 1 if local else int(strategy.num_replicas_in_sync)
        # Multi-worker: every worker runs the step on the same batch, each replica on its
        # slice, and an all-gather returns the whole batch to every worker.
        gather = not local and distributed.is_multi_worker_strategy(strategy)
        self.distributed = self.num_replicas > 1
        self.pad_to = pad_to
        floatx = _keras.floatx(model)

        def cast_inputs(data):
            def cast(t):
                return tf.cast(t, floatx) if t.dtype.is_floating and t.dtype != floatx else t

            return tf.nest.map_structure(cast, data)

        def cast_outputs(out):
            def cast(t):
                t = tf.convert_to_tensor(t)
                return tf.cast(t, tf.float32) if float32_outputs and t.dtype.is_floating else t

            return tf.nest.map_structure(cast, out)

        if output_fn is not None and not hasattr(output_fn, "get_concrete_function"):
            # A nested tf.function: inlined into the step, with autograph for user code.
            output_fn = tf.function(output_fn)

        @tf.autograph.experimental.do_not_convert
        def replica_step(data):
            out = model.predict_step(cast_inputs(data))  # what keras' predict_function runs
            if output_fn is not None:
                out = output_fn(out)
            return cast_outputs(out)

        _build_eagerly(model, _unpack_x(data_spec))

        def spec(s):
            shape = (self.pad_to,) + tuple(s.shape)
            return tf.TensorSpec(shape, tf.as_dtype(s.dtype))

        signature = [tf.nest.map_structure(spec, data_spec)]

        if not self.distributed:

            @tf.autograph.experimental.do_not_convert
            def step(data):
                self.trace_count += 1
                return replica_step(data)

            self.fn = tf.function(
                step, input_signature=signature, reduce_retracing=True, jit_compile=jit_compile
            )
            return

        per_device = {}

        @tf.autograph.experimental.do_not_convert
        def xla_replica_step(data):
            # One XLA function object per replica device: a single traced function would
            # capture replica 0's variables for every replica.
            devices = repr(tf.distribute.get_replica_context().devices)
            if devices not in per_device:
                per_device[devices] = tf.function(replica_step, jit_compile=True)
            return per_device[devices](data)

        @tf.autograph.experimental.do_not_convert
        def distributed_step(data):
            self.trace_count += 1
            fn = xla_replica_step if jit_compile else replica_step
            per_replica = strategy.run(fn, args=(data,))
            if gather:  # replica order is slice order: the batch in sample order
                return tf.nest.map_structure(lambda t: strategy.gather(t, axis=0), per_replica)
            local = strategy.experimental_local_results(per_replica)
            # Shards are contiguous slices in replica order: concat restores sample order.
            return tf.nest.map_structure(lambda *parts: tf.concat(parts, axis=0), *local)

        self.strategy = strategy
        self.fn = tf.function(distributed_step, reduce_retracing=True)

    def data(self, x):
        """Raw padded inputs -> the ``data`` ``predict_step`` receives (preprocessed)."""
        return _pack(x) if self.prep is None else self.prep(x)

    def state(self):
        """The weights a pass runs with: the step captures the model's variables."""
        return None

    def __call__(self, data, state=None):
        if not self.distributed:
            return self.fn(data)
        shard = self.pad_to // self.num_replicas

        def value_fn(ctx):
            i = ctx.replica_id_in_sync_group
            return _map(lambda a: a[i * shard : (i + 1) * shard], data)

        return self.fn(self.strategy.experimental_distribute_values_from_function(value_fn))


class _JaxStep:
    """The ``jax.jit`` step for one Keras 3 model on the JAX backend.

    On JAX, ``predict_step(state, data)`` is stateless: it takes the weights
    ``(trainable, non_trainable)`` as arguments and returns ``(outputs,
    non_trainable)``, as Keras' own ``predict_function`` calls it. The weights are
    arguments of the compiled function, not constants, so one trace serves every pass
    while training changes them; they are read once per pass (:meth:`state`), after the
    callback's ``Callback.model`` ran ``jax_state_sync()`` (during ``fit`` the variables
    are stale otherwise), and a pass ends inside the hook that started it (Keras' train
    function donates the weight buffers it is given, so a snapshot kept past the hook may
    point at deleted buffers). Nothing is donated here.

    Every call gets ``pad_to`` rows: one trace, one XLA program. Under a
    ``keras.distribution`` (``DataParallel``, ``ModelParallel``) the batch is laid out as
    the distribution lays out ``fit``'s batches (``pad_to`` a multiple of its batch-axis
    devices) and the jitted step follows the weights' shardings. A KerasHub preprocessor
    runs as for TensorFlow (:class:`_Preprocess`, on the host); its output is handed to the
    step as numpy arrays.
    """

    distributed = False

    def __init__(self, model, prep, data_spec, pad_to, output_fn, float32_outputs, local=False):
        import jax
        import keras

        self.model = model
        self.parts = _model_parts(model)
        self.prep: _Preprocess | None = prep
        self.local = local
        self.trace_count = 0
        self.pad_to = pad_to
        self.layouts = _data_layouts(data_spec, pad_to)
        floatx = _keras.floatx(model)
        ops = keras.ops

        def cast_input(t):
            floating = _keras.is_float_dtype(t.dtype)
            return ops.cast(t, floatx) if floating and t.dtype != floatx else t

        def cast_output(t):
            t = ops.convert_to_tensor(t)
            floating = _keras.is_float_dtype(t.dtype)
            return ops.cast(t, "float32") if float32_outputs and floating else t

        def step(state, data):
            self.trace_count += 1  # runs only while jax traces
            out, _ = model.predict_step(state, _map(cast_input, data))
            if output_fn is not None:
                out = output_fn(out)
            return _map(cast_output, out)

        _build_eagerly(model, _unpack_x(data_spec))
        self.fn = jax.jit(step)

    def data(self, x):
        """Raw padded inputs -> the ``data`` ``predict_step`` receives, as arrays (laid
        out for the distribution, if any)."""
        data = _pack(x) if self.prep is None else self.prep(x)
        data = _map(np.asarray, data)
        if self.layouts is None:
            return data
        import jax

        return _map(
            lambda a, layout: jax.make_array_from_process_local_data(layout, a), data, self.layouts
        )

    def state(self):
        """The weights of one pass: ``(trainable, non_trainable)`` values, read now."""
        model = self.model
        return (
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
        )

    def __call__(self, data, state=None):
        return self.fn(self.state() if state is None else state, data)


def _data_layouts(data_spec, pad_to):
    """The ``keras.distribution``'s layout of each padded input (``None`` without one)."""
    import keras

    distribution = keras.distribution.distribution()
    if distribution is None:
        return None
    return _map(
        lambda s: distribution.get_data_layout((pad_to,) + tuple(s.shape)).backend_layout,
        data_spec,
    )


def _jax_batch_devices() -> int:
    """Devices the ``keras.distribution`` in effect splits a batch over (1 without one).

    Raises:
        FastEvalInputError: JAX runs several processes (multi-host): each would hold only
            its slice of the validation batch, which the step does not gather.
    """
    import jax
    import keras

    if jax.process_count() > 1:
        raise FastEvalInputError(
            f"the JAX backend runs {jax.process_count()} processes (jax.distributed, "
            "multi-host): the task callbacks and BatchedPredictor predict in one process "
            "only. Evaluate in a single-process run, or log with the drop-in "
            "WandbEvalCallback base (your own add_model_predictions)."
        )
    distribution = keras.distribution.distribution()
    if distribution is None:
        return 1
    mesh = distribution.device_mesh
    return int(mesh.shape[list(mesh.axis_names).index(distribution.batch_dim_name)])


def _make_step(model, prep, data_spec, pad_to, output_fn, jit_compile, float32_outputs, local):
    if _keras.backend_of(model) == "jax":
        return _JaxStep(model, prep, data_spec, pad_to, output_fn, float32_outputs, local)
    return _TFStep(model, prep, data_spec, pad_to, output_fn, jit_compile, float32_outputs, local)


def _replicas(model, local: bool) -> int:
    """Devices one batch is split over: the model's strategy (TensorFlow), the
    ``keras.distribution`` (JAX), 1 when ``local``."""
    if local:
        return 1
    if _keras.backend_of(model) == "jax":
        return _jax_batch_devices()
    return int(model.distribute_strategy.num_replicas_in_sync)


def _unpack_x(data):
    import keras

    return keras.utils.unpack_x_y_sample_weight(data)[0]


def _pack(x):
    import keras

    return keras.utils.pack_x_y_sample_weight(x)


def _hw(x: Any, path: Any) -> tuple[int, int] | None:
    return None if path is None else image_inputs.image_hw(x, path)


def _image_path(x_or_spec, image_key, strict: bool):
    """Path of the image input, or ``None`` when there is none (``strict``: raise)."""
    try:
        return image_inputs.image_input(x_or_spec, image_key)
    except FastEvalInputError:
        if strict:
            raise
    if image_key is not None:
        return _image_path(x_or_spec, None, strict=False)
    return None


def _build_eagerly(model, x_spec) -> None:
    """Create an unbuilt model's variables outside the step, so it traces only once.

    (``tf.function`` traces a second time when the first trace creates variables.)
    """
    if model.built or any(None in s.shape for s in _sources.flatten(x_spec)):
        return
    zeros = _map(lambda s: np.zeros((1,) + tuple(s.shape), s.dtype), x_spec)
    strategy = getattr(model, "distribute_strategy", None)  # TensorFlow only
    if strategy is None:
        model(zeros, training=False)
        return
    with strategy.scope():
        model(zeros, training=False)


def _map(fn, *structures):
    return _keras.tree().map_structure(fn, *structures)


def _to_numpy(structure):
    return None if structure is None else _map(np.asarray, structure)


def _pad_rows(structure, size):
    """Zero-pad every leaf along axis 0 to ``size`` rows: TensorFlow tensors (a tf.data
    batch) with ``tf.pad``, anything else (numpy, JAX arrays) as numpy."""

    def pad(a):
        n = a.shape[0]
        if n == size:
            return a
        if not type(a).__module__.startswith("tensorflow"):
            a = np.asarray(a)
            return np.concatenate([a, np.zeros((size - n,) + a.shape[1:], a.dtype)])
        import tensorflow as tf

        paddings = [[0, size - n]] + [[0, 0]] * (len(a.shape) - 1)
        return tf.pad(a, paddings)

    return _map(pad, structure)


def _unpad(outputs, rows: int, keep: int):
    """Step outputs -> host numpy, first ``keep`` of ``rows`` rows (padding dropped)."""

    def to_host(name, t):
        a = np.asarray(t)
        if a.ndim == 0 or a.shape[0] != rows:
            raise ValueError(
                f"{name} must be batch-major with leading dim {rows} (the step's batch), got "
                f"shape {a.shape}; output_fn must keep one row per sample"
            )
        return a[:keep]

    names = iter(_sources.named_leaves(outputs, "outputs"))
    return _map(lambda t: to_host(next(names)[0], t), outputs)


_DONE = object()


class _Failed:
    def __init__(self, error):
        self.error = error


class BatchedPredictor:
    """Runs a Keras model over a validation source through one cached compiled step.

    Args:
        model: a Keras model (unbuilt models are built on one zero sample first), or
            ``None`` to pass it later to :meth:`iter_batches` / :meth:`predict_all` (what
            callbacks do). Models built under a ``tf.distribute`` strategy run on all its
            replicas; on JAX, under a ``keras.distribution`` (``DataParallel``...) each
            batch is laid out as ``fit`` lays out its batches.
        source: numpy array(s) in Keras' ``x`` / ``(x,)`` / ``(x, y)`` layout (dicts or
            lists of arrays allowed), a ``tf.data.Dataset`` (batched or not, labels or
            not) or a ``keras.utils.PyDataset``.
        batch_size: samples per step ``B``. Default 32 for arrays and unbatched datasets,
            the source's own batch size for batched datasets and PyDatasets.
        max_samples: evaluate at most this many samples per pass.
        selection: ``"first"``: the first ``max_samples`` samples; ``"random"``: a fixed
            ``seed`` subset of ``max_samples`` samples. The same samples every pass.
        seed: seed of the random subset.
        output_fn: optional function ``outputs -> structure of tensors`` compiled into
            the step (e.g. ``keras.ops.softmax`` + ``keras.ops.top_k``): ``keras.ops`` on
            any backend, TensorFlow ops on TensorFlow only. Its outputs must be
            batch-major (leading dim = batch).
        jit_compile: compile the TensorFlow step with XLA (the step always gets ``B``
            rows, so one shape is compiled). JAX steps are always XLA. A KerasHub
            preprocessor is never compiled.
        float32_outputs: cast floating outputs (e.g. float16 under mixed precision) to
            float32 inside the step.
        return_x: also hand back each batch's inputs as numpy in ``PredictionBatch.x``.
        prefetch: results computed ahead of the consumer (bounded queue depth). ``0`` runs
            synchronously in the caller's thread.
        batched: for ``tf.data`` sources, whether elements are batched (default: inferred
            from the model's input rank).
        image_key: for multi-input models, the input that is the image (a dict key,
            tuple index or path, see :func:`fastevalcb.sources.image_input`); it gives
            ``PredictionBatch.image_hw`` / ``model_hw``. Default: the only image-shaped
            input, if there is exactly one.
        local: run on this process' default device, ignoring the model's strategy (the
            chief's non-distributed step in multi-worker chief-only evaluation). Under
            ``MultiWorkerMirroredStrategy`` otherwise, every worker must run every step:
            each predicts its replicas' slice and gets the gathered batch.

    Raises:
        TypeError, ValueError: bad source or options (empty source, arrays of different
            lengths); input rank/shape mismatches against the model are raised when the
            model is first seen, before any prediction. A batched ``tf.data`` source whose
            batch dim is not static reads one batch then, to learn ``B``.
        FastEvalInputError: ``image_key`` names no image input of ``x``, or the model's
            backend has no compiled step (torch), or JAX runs multi-process (when the
            model is first seen).
    """

    def __init__(
        self,
        model=None,
        source: Any = None,
        *,
        batch_size: int | None = None,
        max_samples: int | None = None,
        selection: str = "first",
        seed: int = 0,
        output_fn: Callable[..., Any] | None = None,
        jit_compile: bool = False,
        float32_outputs: bool = True,
        return_x: bool = False,
        prefetch: int = 2,
        batched: bool | None = None,
        image_key: Any = None,
        local: bool = False,
    ):
        if source is None:
            raise ValueError("source is required, got None")
        if output_fn is not None and not callable(output_fn):
            raise TypeError(f"output_fn must be callable, got {type(output_fn).__name__}")
        if not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be an int >= 0, got {prefetch!r}")
        self.source = _sources.adapt_source(
            source,
            batch_size=batch_size,
            max_samples=max_samples,
            selection=selection,
            seed=seed,
            batched=batched,
        )
        self.output_fn = output_fn
        self.jit_compile = bool(jit_compile)
        self.float32_outputs = bool(float32_outputs)
        self.return_x = bool(return_x)
        self.prefetch = prefetch
        self.image_key = image_key
        self.local = bool(local)
        self.model = model
        self._step: Any | None = None  # _TFStep or _JaxStep
        self._raw_image = self._model_image = None
        if model is not None:
            self._prepare(model)

    # ------------------------------------------------------------------ public API

    @property
    def trace_count(self) -> int:
        """Times the current model's step was traced (1 after any number of passes)."""
        return 0 if self._step is None else self._step.trace_count

    @property
    def batch_size(self) -> int | None:
        """The step batch size ``B`` (``None`` until known for self-batched sources)."""
        return self.source.batch_size

    def selected_indices(self) -> np.ndarray | None:
        """`(N,)` int64 global ids one pass evaluates, when known without iterating."""
        return self.source.selected_indices()

    def warmup(self, model=None) -> BatchedPredictor:
        """Build, trace and (for XLA) compile the step now, on one batch of zeros.

        (The model's preprocessor, if any, is traced when the step is built.)

        Call at train begin so the first log does not pay the compile cost. Sources whose
        per-sample shape is not fully known are traced on their first real batch instead.
        """
        step = self._prepare(model)
        spec = self.source.x_spec()
        leaves = _sources.named_leaves(spec, "x")
        if all(None not in s.shape for _, s in leaves):
            zeros = _map(lambda s: np.zeros((step.pad_to,) + tuple(s.shape), s.dtype), spec)
            step(step.data(zeros))
        return self

    def iter_batches(self, model=None) -> Iterator[PredictionBatch]:
        """Stream one pass of predictions, one :class:`PredictionBatch` per step.

        The source is validated against the model and the step built (once per model)
        before this returns, so errors surface before any prediction. While the caller
        processes a batch, the next ``prefetch`` batches are computed in a background
        thread. Breaking out of the loop stops the thread.

        Args:
            model: the model to run; defaults to the one given at construction. A
                different model object, or a new ``preprocessor`` / ``prediction_decoder``
                on the same model, rebuilds (and retraces) the step.

        Returns:
            An iterator of :class:`PredictionBatch`, in sample order.
        """
        step = self._prepare(model)
        produce = self._produce(step, step.state())  # the weights now, in this thread
        if self.prefetch == 0:
            return produce
        return self._threaded(produce)

    def predict_all(self, model=None, return_index: bool = False):
        """Predictions for every selected sample, concatenated (outputs only, not inputs).

        Args:
            model: as in :meth:`iter_batches`.
            return_index: also return the `(N,)` int64 global sample ids.

        Returns:
            Outputs with leading dim ``N`` (same structure as the model / ``output_fn``
            output), or ``(index, outputs)`` when ``return_index``.
        """
        index, parts = [], []
        for batch in self.iter_batches(model):
            index.append(batch.index)
            parts.append(batch.outputs)
        if not parts:
            raise ValueError("source is empty: expected at least 1 sample, got 0")
        outputs = _map(lambda *leaves: np.concatenate(leaves, axis=0), *parts)
        if return_index:
            return np.concatenate(index), outputs
        return outputs

    # ------------------------------------------------------------------ internals

    def _prepare(self, model):
        """Check the source against ``model`` and build its step, unless cached."""
        model = self.model if model is None else model
        if model is None:
            raise ValueError("no model: pass one to BatchedPredictor(...) or to this call")
        _keras.check_backend(_keras.backend_of(model), "BatchedPredictor")
        step = self._step
        if (
            step is not None
            and step.model is model
            and step.local == self.local
            and _same(step.parts, _model_parts(model))
        ):
            return step
        expected = model_inputs.model_input_structure(model)
        ranks = None
        if expected is not None:
            ranks = [len(t.shape) for t in _sources.flatten(expected)]
        self.source.resolve(ranks)
        x_spec = self.source.x_spec()
        if self.source.batch_size is None:  # batched dataset with unknown static batch dim
            first = next(iter(self.source.batches()), None)  # reads one batch, once
            if first is None:
                raise ValueError("source is empty: expected at least 1 sample, got 0")
            self.source.batch_size = len(first)
        self._raw_image = _image_path(x_spec, self.image_key, strict=self.image_key is not None)
        # One static batch: one trace, one XLA shape, equal shards, static-batch decoders.
        replicas = _replicas(model, self.local)
        pad_to = -(-self.source.batch_size // replicas) * replicas
        prep_fn = preprocess_fn(model)
        prep = None if prep_fn is None else _Preprocess(prep_fn, x_spec, pad_to)
        data_spec = _pack(x_spec) if prep is None else prep.data_spec
        model_x_spec = _unpack_x(data_spec)
        model_inputs.check_inputs(model_x_spec, model)
        self._model_image = _image_path(model_x_spec, self.image_key, strict=False)
        self.model = model
        self._step = _make_step(
            model,
            prep,
            data_spec,
            pad_to,
            self.output_fn,
            self.jit_compile,
            self.float32_outputs,
            self.local,
        )
        return self._step

    def _host_batches(self) -> Iterator[_sources.HostBatch]:
        """Source batches, split to at most ``B`` rows."""
        b = self.source.batch_size
        assert b is not None  # resolved in _prepare, before any batch is read
        for batch in self.source.batches():
            if len(batch) <= b:
                yield batch
                continue
            for s in range(0, len(batch), b):
                part = operator.itemgetter(slice(s, s + b))
                yield _sources.HostBatch(
                    index=part(batch.index),
                    x=_map(part, batch.x),
                    y=None if batch.y is None else _map(part, batch.y),
                )

    def _produce(self, step, state) -> Generator[PredictionBatch, None, None]:
        """Synchronous pass: host batch -> pad -> (preprocess) -> step -> numpy -> unpad.

        ``state``: the weights of the pass (JAX) or ``None`` (TensorFlow steps capture them).
        """
        count = 0
        raw_image, model_image = self._raw_image, self._model_image
        for batch in self._host_batches():
            n = len(batch)
            if n == 0:
                continue
            data = step.data(_pad_rows(batch.x, step.pad_to))
            outputs = _unpad(step(data, state), rows=step.pad_to, keep=n)
            count += n
            yield PredictionBatch(
                index=batch.index,
                outputs=outputs,
                y=_to_numpy(batch.y),
                x=_to_numpy(batch.x) if self.return_x else None,
                image_hw=_hw(batch.x, raw_image),
                model_hw=_hw(_unpack_x(data), model_image),
            )
        if count == 0:
            raise ValueError("source is empty: expected at least 1 sample, got 0")

    def _threaded(
        self, produce: Generator[PredictionBatch, None, None]
    ) -> Iterator[PredictionBatch]:
        """Run ``produce`` in a background thread, ``prefetch`` results ahead."""
        results: queue.Queue[Any] = queue.Queue(maxsize=self.prefetch)  # batches, _DONE, _Failed
        stop = threading.Event()

        def put(item) -> bool:
            while not stop.is_set():
                try:
                    results.put(item, timeout=0.1)
                    return True
                except queue.Full:
                    continue
            return False

        def work():
            try:
                for item in produce:
                    if not put(item):
                        return
                put(_DONE)
            except BaseException as err:  # handed to the consumer, re-raised there
                put(_Failed(err))
            finally:
                produce.close()

        thread = threading.Thread(target=work, name="fastevalcb-predictor", daemon=True)
        return _consume(results, stop, thread)


def _consume(results, stop, thread) -> Iterator[PredictionBatch]:
    thread.start()  # on the first next(), so an unused iterator leaves no thread behind
    try:
        while True:
            item = results.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
