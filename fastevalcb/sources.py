"""Validation sources -> fixed-size host batches carrying global sample ids.

This is the first stage of the pipeline (``source -> predictor -> ...``). It turns what a
user hands to ``model.predict`` / ``validation_data`` into a stream of :class:`HostBatch`
objects of at most ``batch_size`` samples, each tagged with the global sample ids it holds,
without ever materialising the whole input set:

* numpy arrays, or tuples / lists / dicts of them, following Keras' ``(x,)``, ``(x, y)``,
  ``(x, y, sample_weight)`` convention (``keras.utils.unpack_x_y_sample_weight``);
* ``tf.data.Dataset`` (batched or unbatched, with or without labels), streamed through
  ``enumerate -> [filter] -> batch -> prefetch``;
* ``keras.utils.PyDataset``, read batch by batch.

Sample selection is deterministic, so the same samples are evaluated at every log:
``selection="first"`` keeps the first ``max_samples`` samples, ``selection="random"`` keeps
a fixed-seed subset of them (in increasing sample order).

Everything that can be checked without a model (types, lengths, emptiness, options) is
checked by :func:`adapt_source`. Checks against the model's inputs
(:func:`fastevalcb.model_inputs.check_inputs`) run when the predictor first meets its model,
before any prediction; :mod:`fastevalcb.image_inputs` finds the image among the inputs.

The three adapters stay in one module (a little over 500 lines): they share the selection
rules (:func:`choose_indices`) and the :class:`HostBatch` contract, and each is read
against the others.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from fastevalcb import _keras

DEFAULT_BATCH_SIZE = 32
SELECTIONS = ("first", "random")


@dataclasses.dataclass
class HostBatch:
    """One batch as it leaves the source, before the compiled step.

    Attributes:
        index: `(n,)` int64 global sample ids, increasing; ``n <= batch_size``.
        x: model inputs with leading dim ``n``; numpy arrays or eager tensors, same
            structure as the source's ``x``.
        y: labels with leading dim ``n`` (same kinds as ``x``), or ``None``.
    """

    index: npt.NDArray[np.int64]
    x: Any
    y: Any = None

    def __len__(self) -> int:
        return int(self.index.shape[0])


@dataclasses.dataclass(frozen=True)
class SampleSpec:
    """Per-sample shape and dtype of one input leaf (leading batch dim removed).

    Attributes:
        shape: per-sample shape, entries may be ``None`` (unknown).
        dtype: numpy-compatible dtype name, e.g. ``"float32"``.
    """

    shape: tuple[int | None, ...]
    dtype: str


# --------------------------------------------------------------------------- helpers


def _tree() -> ModuleType:
    return _keras.tree()


def _leaf_paths(structure: Any) -> list[str]:
    """Readable names for every leaf of ``structure``: ``x``, ``x['a']``, ``x[1]``."""
    names: list[str] = []

    def walk(node: Any, name: str) -> None:
        if isinstance(node, dict):
            for key in sorted(node):
                walk(node[key], f"{name}[{key!r}]")
        elif isinstance(node, (list, tuple)):
            for i, item in enumerate(node):
                walk(item, f"{name}[{i}]")
        else:
            names.append(name)

    walk(structure, "")
    return names


def flatten(structure: Any) -> list[Any]:
    """Leaves of ``structure`` in ``keras.tree.flatten`` order (dict keys sorted)."""
    leaves: list[Any] = _tree().flatten(structure)
    return leaves


def named_leaves(structure: Any, prefix: str) -> list[tuple[str, Any]]:
    """``[(name, leaf), ...]`` in ``keras.tree.flatten`` order (dict keys sorted)."""
    leaves = _tree().flatten(structure)
    names = [prefix + n for n in _leaf_paths(structure)]
    return list(zip(names, leaves))


def split_xy(data: Any) -> tuple[Any, Any]:
    """Split a source element into ``(x, y)`` with Keras' rules; sample weights dropped."""
    x, y, _ = _keras.unpack_x_y_sample_weight(data)
    return x, y


def _slice(structure: Any, key: slice | npt.NDArray[np.int64]) -> Any:
    return _tree().map_structure(lambda a: a[key], structure)


def _num_rows(leaf: Any) -> int:
    return int(leaf.shape[0])


# --------------------------------------------------------------------------- base


class Source:
    """A validation source: yields :class:`HostBatch` es of at most ``batch_size`` samples.

    Attributes:
        batch_size: the step batch size ``B`` (padded size under XLA / distribution);
            ``None`` until known for batched sources without an explicit ``batch_size``.
        num_samples: number of samples one pass yields, when known before iterating.
        has_labels: whether batches carry ``y``.
        in_memory: whether every sample is already in host memory (numpy arrays): its
            selection and labels can then be read whole at construction, before any model.
    """

    batch_size: int | None = None
    num_samples: int | None = None
    has_labels: bool = False
    in_memory: bool = False

    def x_spec(self) -> Any:
        """Structure of :class:`SampleSpec`, one per ``x`` leaf (batch dim removed)."""
        raise NotImplementedError

    def resolve(self, model_ranks: list[int] | None) -> None:
        """Fix what depends on the model (batched-ness of datasets). Default: nothing.

        Args:
            model_ranks: full ranks (batch dim included) of the model's flat inputs, or
                ``None`` when the model does not declare its inputs.
        """

    def batches(self) -> Iterator[HostBatch]:
        """One deterministic pass over the selected samples."""
        raise NotImplementedError

    def selected_indices(self) -> npt.NDArray[np.int64] | None:
        """`(N,)` int64 global sample ids one pass yields, if known without iterating."""
        return None


def _check_options(
    max_samples: object, selection: object, seed: object, batch_size: object
) -> None:
    """Refuse bad options before any source is read (typed ``object``: they come from users)."""
    if batch_size is not None and (not isinstance(batch_size, (int, np.integer)) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    if max_samples is not None and (
        not isinstance(max_samples, (int, np.integer)) or max_samples < 1
    ):
        raise ValueError(f"max_samples must be a positive int or None, got {max_samples!r}")
    if selection not in SELECTIONS:
        raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
    if selection == "random" and max_samples is None:
        raise ValueError('selection="random" needs max_samples (the subset size), got None')
    if not isinstance(seed, (int, np.integer)):
        raise ValueError(f"seed must be an int, got {seed!r}")


def choose_indices(
    num_total: int, max_samples: int | None, selection: str, seed: int
) -> npt.NDArray[np.int64]:
    """Deterministic sample selection.

    Args:
        num_total: number of samples in the source.
        max_samples: keep at most this many (``None``: all).
        selection: ``"first"`` (ids ``0..N-1``) or ``"random"`` (a ``seed``-fixed subset).
        seed: seed of the subset; the same seed gives the same ids at every call.

    Returns:
        `(N,)` int64 sorted global sample ids, ``N = min(max_samples, num_total)``.
    """
    n = num_total if max_samples is None else min(int(max_samples), num_total)
    if selection == "first" or n == num_total:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_total, size=n, replace=False)).astype(np.int64)


# --------------------------------------------------------------------------- numpy


class ArraySource(Source):
    """Numpy arrays (or nested tuples/lists/dicts of them), sliced lazily per batch."""

    in_memory = True
    # Always known (narrower than Source's): set in __init__ from the arrays and options.
    batch_size: int
    num_samples: int

    def __init__(
        self,
        data: Any,
        *,
        batch_size: int | None,
        max_samples: int | None,
        selection: str,
        seed: int,
    ) -> None:
        x, y = split_xy(data)
        if x is None:
            raise ValueError("source has no inputs: got x=None")
        leaves = named_leaves(x, "x") + ([] if y is None else named_leaves(y, "y"))
        for name, leaf in leaves:
            if not isinstance(leaf, np.ndarray):
                raise TypeError(
                    f"array source leaf {name} must be a numpy array, got {type(leaf).__name__}"
                )
            if leaf.ndim == 0:
                raise ValueError(f"array source leaf {name} must have a batch dim, got shape ()")
        lengths = {name: _num_rows(leaf) for name, leaf in leaves}
        if len(set(lengths.values())) > 1:
            got = ", ".join(f"{k}: {v}" for k, v in lengths.items())
            raise ValueError(f"all source arrays must have the same number of samples, got {got}")
        total = next(iter(lengths.values()))
        if total == 0:
            raise ValueError("source is empty: expected at least 1 sample, got 0")
        self._x, self._y = x, y
        self.has_labels = y is not None
        self.batch_size = int(batch_size or DEFAULT_BATCH_SIZE)
        self._index = choose_indices(total, max_samples, selection, seed)
        self._contiguous = bool(self._index[-1] == len(self._index) - 1)
        self.num_samples = len(self._index)

    def x_spec(self) -> Any:
        return _tree().map_structure(
            lambda a: SampleSpec(tuple(a.shape[1:]), np.dtype(a.dtype).name), self._x
        )

    def selected_indices(self) -> npt.NDArray[np.int64]:
        return self._index

    def batches(self) -> Iterator[HostBatch]:
        b = self.batch_size
        for start in range(0, self.num_samples, b):
            index = self._index[start : start + b]
            # First-N selections slice views; fixed-seed subsets gather one batch at a time.
            key = slice(start, start + len(index)) if self._contiguous else index
            y = None if self._y is None else _slice(self._y, key)
            yield HostBatch(index=index, x=_slice(self._x, key), y=y)


# --------------------------------------------------------------------------- tf.data


class DatasetSource(Source):
    """A ``tf.data.Dataset``, streamed (never materialised).

    Whether the dataset is already batched is taken from ``batched`` when given, else from
    the model's input rank at first use, else from a leading ``None`` dim in its spec.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        batch_size: int | None,
        max_samples: int | None,
        selection: str,
        seed: int,
        batched: bool | None = None,
    ) -> None:
        import tensorflow as tf

        self._ds = dataset
        self._requested_batch_size = batch_size
        self._max_samples = max_samples
        self._selection = selection
        self._seed = seed
        self._batched = batched
        spec = dataset.element_spec
        x_spec, y_spec = split_xy(spec)
        if x_spec is None:
            raise ValueError("dataset has no inputs: element x is None")
        for name, leaf in named_leaves(x_spec, "x"):
            if not isinstance(leaf, tf.TensorSpec):
                raise TypeError(
                    f"dataset leaf {name} must be a dense tensor, got {type(leaf).__name__}"
                )
        self._x_elem_spec, self.has_labels = x_spec, y_spec is not None
        card = int(dataset.cardinality())
        if card == 0:
            raise ValueError("source is empty: expected a dataset with elements, got 0")
        self._cardinality = card if card > 0 else None  # None: unknown or infinite
        if card == int(tf.data.INFINITE_CARDINALITY) and max_samples is None:
            raise ValueError("dataset is infinite: pass max_samples to bound one pass")
        if selection == "random" and self._cardinality is None:
            raise ValueError(
                'selection="random" needs a dataset of known length; got unknown cardinality '
                "(use selection='first', or "
                "dataset.apply(tf.data.experimental.assert_cardinality(n)))"
            )
        # Set by _build_pipeline, once resolve() knows whether elements are batched.
        self._pipeline: Any | None = None  # the tf.data pipeline one pass iterates
        self._per_sample_spec: Any = None  # structure of SampleSpec, one per x leaf
        self._index: npt.NDArray[np.int64] | None = None
        self._host_count = False  # ids from a running count (the dataset's own batches)

    # -- model-dependent resolution
    def resolve(self, model_ranks: list[int] | None) -> None:
        if self._pipeline is not None:
            return
        first_x = _tree().flatten(self._x_elem_spec)[0]
        rank = first_x.shape.rank
        if self._batched is None:
            if model_ranks and rank is not None:
                if rank == model_ranks[0]:
                    self._batched = True
                elif rank == model_ranks[0] - 1:
                    self._batched = False
                else:
                    raise ValueError(
                        f"dataset element x has rank {rank} (shape {first_x.shape}) but the model "
                        f"expects inputs of rank {model_ranks[0]} (batched) or "
                        f"{model_ranks[0] - 1} (unbatched)"
                    )
            else:
                self._batched = rank is not None and rank > 0 and first_x.shape[0] is None
        self._build_pipeline()

    def _build_pipeline(self) -> None:
        import tensorflow as tf

        ds = self._ds
        rebatch = self._batched and (
            self._requested_batch_size is not None or self._selection == "random"
        )
        if self._batched and not rebatch:
            # Keep the dataset's own batches; ids come from a running count on the host.
            static = _tree().flatten(self._x_elem_spec)[0].shape
            self.batch_size = self._requested_batch_size or (
                int(static[0]) if static.rank and static[0] is not None else None
            )
            self._per_sample_spec = _tree().map_structure(
                lambda s: SampleSpec(tuple(s.shape[1:]), s.dtype.name), self._x_elem_spec
            )
            self._pipeline = ds.prefetch(tf.data.AUTOTUNE)
            self._host_count = True
            self._index = None
            if self._max_samples is not None:
                self.num_samples = None  # at most max_samples: a short dataset holds fewer
            return
        if rebatch:
            ds = ds.unbatch()
        per_sample = split_xy(ds.element_spec)[0]
        self._per_sample_spec = _tree().map_structure(
            lambda s: SampleSpec(tuple(s.shape), s.dtype.name), per_sample
        )
        self.batch_size = int(self._requested_batch_size or DEFAULT_BATCH_SIZE)
        total = self._cardinality if not rebatch else None
        if rebatch and self._cardinality is not None and self._selection == "random":
            total = int(ds.reduce(np.int64(0), lambda c, _: c + 1))  # counts, keeps nothing
            if total == 0:
                raise ValueError("source is empty: expected a dataset with elements, got 0")
        self._index = None
        ds = ds.enumerate()
        if self._selection == "random" and total is not None:
            self._index = choose_indices(total, self._max_samples, "random", self._seed)
            keep = np.zeros(total, dtype=bool)
            keep[self._index] = True
            keep_t = tf.constant(keep)
            ds = ds.filter(lambda i, _: tf.gather(keep_t, i))
        elif self._max_samples is not None:
            ds = ds.take(self._max_samples)
            if total is not None:
                self._index = np.arange(min(total, self._max_samples), dtype=np.int64)
        elif total is not None:
            self._index = np.arange(total, dtype=np.int64)
        self.num_samples = None if self._index is None else len(self._index)

        def to_triple(i: Any, elem: Any) -> tuple[Any, ...]:
            x, y = split_xy(elem)
            return (i, x) if y is None else (i, x, y)

        self._pipeline = ds.map(to_triple).batch(self.batch_size).prefetch(tf.data.AUTOTUNE)
        self._host_count = False

    def x_spec(self) -> Any:
        if self._pipeline is None:
            self.resolve(None)
        return self._per_sample_spec

    def selected_indices(self) -> npt.NDArray[np.int64] | None:
        return self._index

    def batches(self) -> Iterator[HostBatch]:
        if self._pipeline is None:
            self.resolve(None)
        pipeline = self._pipeline
        assert pipeline is not None  # resolve() always ends in _build_pipeline, which sets it
        if not self._host_count:
            for elem in pipeline:
                index = elem[0].numpy()
                yield HostBatch(index=index, x=elem[1], y=elem[2] if len(elem) == 3 else None)
            return
        seen, limit = 0, self._max_samples
        for elem in pipeline:
            x, y = split_xy(elem)
            n = _num_rows(_tree().flatten(x)[0])
            if limit is not None and seen + n > limit:
                n = limit - seen
                x, y = _slice(x, slice(0, n)), None if y is None else _slice(y, slice(0, n))
            yield HostBatch(index=np.arange(seen, seen + n, dtype=np.int64), x=x, y=y)
            seen += n
            if limit is not None and seen >= limit:
                return


# --------------------------------------------------------------------------- PyDataset


class PyDatasetSource(Source):
    """A ``keras.utils.PyDataset``, read one batch at a time by index, in order.

    Its ``workers`` / ``use_multiprocessing`` settings are not used: batches are read in
    the predictor's background thread, overlapping the compiled step.

    Sample ids assume Keras' convention that every batch but the last has the size of
    batch 0: sample ``j`` of batch ``i`` has id ``i * len(batch 0) + j``. With
    ``selection="random"`` a fixed-seed subset of *batches* is read (in order) until
    ``max_samples`` samples are collected.
    """

    def __init__(
        self,
        pydataset: Any,
        *,
        batch_size: int | None,
        max_samples: int | None,
        selection: str,
        seed: int,
    ) -> None:
        try:
            self._num_batches = len(pydataset)
        except TypeError as err:
            raise ValueError("PyDataset must define __len__ (a finite number of batches)") from err
        if self._num_batches == 0:
            raise ValueError("source is empty: expected a PyDataset with batches, got 0")
        self._pyds = pydataset
        self._max_samples = max_samples
        self._selection, self._seed = selection, seed
        self.batch_size = batch_size
        # (x, y) of batch 0, read once for specs and ids
        self._first: tuple[Any, Any] | None = None

    def _first_batch(self) -> tuple[Any, Any]:
        if self._first is None:
            x, y = split_xy(self._pyds[0])
            for name, leaf in named_leaves(x, "x"):
                if not hasattr(leaf, "shape") or len(leaf.shape) == 0:
                    raise ValueError(
                        f"PyDataset batch leaf {name} must be an array with a batch dim"
                    )
            self._first = (x, y)
            self.has_labels = y is not None
            if self.batch_size is None:
                self.batch_size = _num_rows(_tree().flatten(x)[0])
        return self._first

    def resolve(self, model_ranks: list[int] | None) -> None:
        self._first_batch()

    def x_spec(self) -> Any:
        x, _ = self._first_batch()
        return _tree().map_structure(
            lambda a: SampleSpec(tuple(a.shape[1:]), np.dtype(_np_dtype(a)).name), x
        )

    def _batch_order(self) -> npt.NDArray[np.int64] | range:
        if self._selection == "random":
            rng = np.random.default_rng(self._seed)
            order = rng.permutation(self._num_batches)
            needed = self._batches_needed()
            # The last batch may be short (a PyDataset's last batch holds the remainder):
            # one more batch makes up for it, so that a pass reads max_samples samples
            # whenever the source holds that many (batches() stops at max_samples).
            if self._num_batches - 1 in order[:needed]:
                needed += 1
            return np.sort(order[:needed])
        return range(self._num_batches)

    def _batches_needed(self) -> int:
        per = _num_rows(_tree().flatten(self._first_batch()[0])[0])
        if self._max_samples is None:
            return self._num_batches
        return math.ceil(self._max_samples / per)

    def batches(self) -> Iterator[HostBatch]:
        first_x, _ = self._first_batch()
        per = _num_rows(_tree().flatten(first_x)[0])
        seen, limit = 0, self._max_samples
        for i in self._batch_order():
            x, y = split_xy(self._pyds[int(i)])  # re-read: batch 0 may change per epoch
            n = _num_rows(_tree().flatten(x)[0])
            if limit is not None and seen + n > limit:
                n = limit - seen
                x, y = _slice(x, slice(0, n)), None if y is None else _slice(y, slice(0, n))
            yield HostBatch(index=np.arange(i * per, i * per + n, dtype=np.int64), x=x, y=y)
            seen += n
            if limit is not None and seen >= limit:
                return


def _np_dtype(a: Any) -> Any:
    dtype = getattr(a, "dtype", None)
    if dtype is not None and hasattr(dtype, "as_numpy_dtype"):  # a tf.DType
        return dtype.as_numpy_dtype
    return dtype


# --------------------------------------------------------------------------- entry points


def adapt_source(
    source: Any,
    *,
    batch_size: int | None = None,
    max_samples: int | None = None,
    selection: str = "first",
    seed: int = 0,
    batched: bool | None = None,
) -> Source:
    """Wrap a validation source, checking what can be checked without a model.

    Args:
        source: numpy array(s) in Keras' ``x`` / ``(x,)`` / ``(x, y)`` / ``(x, y, w)``
            layout (``x`` and ``y`` may be dicts/lists of arrays), a ``tf.data.Dataset``
            or a ``keras.utils.PyDataset``.
        batch_size: step batch size; default 32 for arrays and unbatched datasets, the
            source's own batch size for batched datasets and PyDatasets.
        max_samples: evaluate at most this many samples per pass.
        selection: ``"first"`` or ``"random"`` (fixed-``seed`` subset of ``max_samples``).
        seed: seed of the random subset.
        batched: for datasets, whether elements are already batched (default: inferred).

    Returns:
        A :class:`Source`.

    Raises:
        TypeError: unsupported source or leaf types.
        ValueError: empty source, arrays of different lengths, bad options.
    """
    _check_options(max_samples, selection, seed, batch_size)
    if isinstance(source, Source):
        return source
    tf = sys.modules.get("tensorflow")  # a tf.data.Dataset exists only once it is imported
    if tf is not None and isinstance(source, tf.data.Dataset):
        return DatasetSource(
            source,
            batch_size=batch_size,
            max_samples=max_samples,
            selection=selection,
            seed=seed,
            batched=batched,
        )
    if isinstance(source, _keras.sequence_types()):
        return PyDatasetSource(
            source, batch_size=batch_size, max_samples=max_samples, selection=selection, seed=seed
        )
    if isinstance(source, (np.ndarray, tuple, list, dict)):
        return ArraySource(
            source, batch_size=batch_size, max_samples=max_samples, selection=selection, seed=seed
        )
    raise TypeError(
        "source must be numpy array(s), a tf.data.Dataset or a keras.utils.PyDataset, "
        f"got {type(source).__name__}"
    )
