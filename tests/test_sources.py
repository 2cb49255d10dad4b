"""fastevalcb.sources: deterministic selection and lazy, bounded host batches."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

from fastevalcb.errors import FastEvalInputError  # noqa: E402
from fastevalcb.image_inputs import image_hw, image_input, input_at, is_image_shape  # noqa: E402
from fastevalcb.sources import ArraySource, SampleSpec, adapt_source, choose_indices  # noqa: E402


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


def test_sources_say_whether_they_are_in_memory():
    import keras

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return np.zeros((3, 4, 4, 3), "float32"), np.zeros(3)

    x, y = np.zeros((6, 4, 4, 3), "float32"), np.zeros(6)
    assert adapt_source((x, y)).in_memory
    assert not adapt_source(tf.data.Dataset.from_tensor_slices((x, y))).in_memory
    assert not adapt_source(Batches()).in_memory


def test_a_random_pydataset_selection_holds_max_samples_with_a_short_last_batch():
    """Ten batches of 4 and a last one of 2: whichever batches a seed draws, a pass reads
    ``max_samples`` samples, each once (seed 3 drew the short batch and read 6 of 8)."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 10

        def __getitem__(self, i):
            n = 2 if i == 9 else 4
            ids = np.arange(i * 4, i * 4 + n)
            return ids[:, None].astype("float32"), ids

    for seed in range(12):
        source = adapt_source(Batches(), max_samples=8, selection="random", seed=seed)
        batches = list(source.batches())
        index = np.concatenate([b.index for b in batches])
        labels = np.concatenate([b.y for b in batches])
        assert len(index) == 8 and len(set(index.tolist())) == 8, seed
        np.testing.assert_array_equal(index, labels)  # the ids are the samples read


# ---------------------------------------------------------------- image_input


def zeros(*shape):
    return np.zeros(shape, "float32")


@pytest.mark.parametrize(
    "x, path",
    [
        (zeros(2, 32, 32, 3), ()),
        (zeros(2, 28, 28), ()),  # grey, no channel axis
        (zeros(2, 8, 8, 1), ()),
        (zeros(2, 8, 8, 4), ()),  # RGBA
        ({"image": zeros(2, 16, 16, 3), "meta": zeros(2, 4)}, ("image",)),
        ((zeros(2, 4), zeros(2, 16, 16, 3)), (1,)),
        ({"inputs": {"image": zeros(2, 9, 9, 3), "ids": zeros(2, 7)}}, ("inputs", "image")),
        ({"image": zeros(2, 9, 9, 3), "name": np.array(["a", "b"])}, ("image",)),
    ],
)
def test_image_input_finds_the_only_image_shaped_input(x, path):
    assert image_input(x) == path
    image = input_at(x, path)
    assert image.ndim in (3, 4)
    assert image_hw(x, path) == image.shape[1:3]


def test_image_input_reads_specs_tensors_and_keras_inputs():
    import keras

    specs = {"image": SampleSpec((None, None, 3), "uint8"), "meta": SampleSpec((4,), "float32")}
    assert image_input(specs) == ("image",)
    tensors = {"a": tf.zeros((2, 5)), "b": tf.TensorSpec((None, 12, 12, 1))}
    assert image_input(tensors) == ("b",)
    inputs = [keras.Input((6,)), keras.Input((20, 20, 3))]
    assert image_input(inputs) == (1,)


def test_image_shapes():
    assert is_image_shape((32, 32, 3)) and is_image_shape((None, None, 1))
    assert is_image_shape((5, 7))
    assert not is_image_shape((32, 32, 5))  # 5 channels
    assert not is_image_shape((1, 32, 3))  # one row is not an image
    assert not is_image_shape((10,)) and not is_image_shape((4, 4, 4, 3))


def test_image_key_names_the_input():
    x = {"left": zeros(2, 8, 8, 3), "right": zeros(2, 8, 8, 3), "meta": zeros(2, 3)}
    assert image_input(x, image_key="right") == ("right",)
    assert image_input((zeros(2, 8, 8, 3), zeros(2, 8, 8, 3)), image_key=1) == (1,)
    nested = {"inputs": {"image": zeros(2, 9, 9, 3)}}
    assert image_input(nested, image_key=("inputs", "image")) == ("inputs", "image")


def test_ambiguous_or_absent_image_is_a_clear_error():
    two = {"left": zeros(2, 8, 8, 3), "right": zeros(2, 6, 6, 1), "meta": zeros(2, 3)}
    with pytest.raises(
        FastEvalInputError,
        match=r"2 image-shaped inputs.*x\['left'\] \(N, 8, 8, 3\), x\['right'\] "
        r"\(N, 6, 6, 1\).*image_key=.*'left', 'right'",
    ):
        image_input(two)
    with pytest.raises(
        FastEvalInputError,
        match=r"no input of x looks like an image.*x\['a'\] \(N, 4\).*image_key=",
    ):
        image_input({"a": zeros(2, 4), "b": zeros(2, 3, 3, 7)})
    with pytest.raises(FastEvalInputError, match=r"image_key='img' names no input.*x\['left'\]"):
        image_input(two, image_key="img")
    with pytest.raises(FastEvalInputError, match=r"image_key='meta'.*\(N, 3\).*not an image"):
        image_input(two, image_key="meta")
    with pytest.raises(FastEvalInputError, match="names no input"):
        image_input(zeros(2, 8, 8, 3), image_key="image")  # a single array has no keys
