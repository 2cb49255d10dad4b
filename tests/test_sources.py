"""fastevalcb.sources: deterministic selection and lazy, bounded host batches."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from fastevalcb.sources import ArraySource, adapt_source, choose_indices  # noqa: E402


@settings(max_examples=50, deadline=None)
@given(
    total=st.integers(1, 500),
    max_samples=st.one_of(st.none(), st.integers(1, 600)),
    selection=st.sampled_from(["first", "random"]),
    seed=st.integers(0, 2**31),
)
def test_choose_indices_is_deterministic_sorted_unique_and_bounded(
    total, max_samples, selection, seed
):
    index = choose_indices(total, max_samples, selection, seed)
    again = choose_indices(total, max_samples, selection, seed)
    np.testing.assert_array_equal(index, again)
    assert index.dtype == np.int64
    assert len(index) == (total if max_samples is None else min(total, max_samples))
    assert np.all(np.diff(index) > 0) and (len(index) == 0 or (index[0] >= 0 and index[-1] < total))
    if selection == "first":
        np.testing.assert_array_equal(index, np.arange(len(index)))


def test_array_source_first_n_yields_views_and_random_gathers():
    x = np.arange(40, dtype="float32").reshape(20, 2)
    y = np.arange(20)
    first = adapt_source((x, y), batch_size=6, max_samples=14)
    batches = list(first.batches())
    assert [len(b) for b in batches] == [6, 6, 2]
    assert all(np.shares_memory(b.x, x) for b in batches)  # no copies for first-N
    np.testing.assert_array_equal(np.concatenate([b.y for b in batches]), np.arange(14))

    subset = adapt_source((x, y), batch_size=4, max_samples=9, selection="random", seed=7)
    index = np.concatenate([b.index for b in subset.batches()])
    np.testing.assert_array_equal(index, subset.selected_indices())
    np.testing.assert_array_equal(np.concatenate([b.x for b in subset.batches()]), x[index])


def test_dataset_source_streams_lazily():
    reads = []

    def gen():
        for i in range(100):
            reads.append(i)
            yield np.full((3,), i, "float32")

    ds = tf.data.Dataset.from_generator(gen, output_signature=tf.TensorSpec((3,), tf.float32))
    source = adapt_source(ds, batch_size=5)
    source.resolve([2])
    first = next(iter(source.batches()))
    np.testing.assert_array_equal(first.index, np.arange(5))
    assert len(reads) < 100  # only a prefetch window was read, not the whole set


def test_adapt_source_passes_sources_through_and_rejects_unknown_types():
    source = ArraySource(
        np.zeros((3, 1)), batch_size=2, max_samples=None, selection="first", seed=0
    )
    assert adapt_source(source) is source
    with pytest.raises(TypeError, match="got int"):
        adapt_source(3)
