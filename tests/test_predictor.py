"""BatchedPredictor against real Keras/TF: equals model.predict, one trace, streaming.

Tiny seeded models only, so the whole file runs in well under two minutes on 2 CPU cores.
"""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from fastevalcb.predictor import BatchedPredictor, PredictionBatch  # noqa: E402

ATOL = 1e-5


def dense_model(in_dim=6, out_dim=4, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((in_dim,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(out_dim)(hidden))


def data(n, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)).astype("float32"), rng.integers(0, 4, size=n)


@pytest.fixture(scope="module")
def model():
    return dense_model()


# ---------------------------------------------------------------- equals model.predict


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("n", [1, 7, 33])
def test_matches_predict_on_ragged_sizes(model, n, jit_compile):
    x, y = data(n)
    predictor = BatchedPredictor(model, (x, y), batch_size=8, jit_compile=jit_compile)
    batches = list(predictor.iter_batches())
    assert [len(b) for b in batches] == [min(8, n - s) for s in range(0, n, 8)]
    assert all(isinstance(b, PredictionBatch) for b in batches)
    np.testing.assert_array_equal(np.concatenate([b.index for b in batches]), np.arange(n))
    np.testing.assert_array_equal(np.concatenate([b.y for b in batches]), y)
    outputs = np.concatenate([b.outputs for b in batches])
    np.testing.assert_allclose(outputs, model.predict(x, verbose=0), atol=ATOL)
    assert outputs.dtype == np.float32


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_one_trace_over_several_epochs_of_a_ragged_set(model, jit_compile):
    x, _ = data(37)
    predictor = BatchedPredictor(model, x, batch_size=8, jit_compile=jit_compile)
    step = None
    for _ in range(4):  # 4 passes, each 4 full batches + one of 5
        np.testing.assert_allclose(predictor.predict_all(), model.predict(x, verbose=0), atol=ATOL)
        step = step or predictor._step
        assert predictor._step is step  # cached, not rebuilt
    assert predictor.trace_count == 1


def test_new_model_object_rebuilds_the_step(model):
    x, _ = data(10)
    predictor = BatchedPredictor(None, x, batch_size=4)
    np.testing.assert_allclose(predictor.predict_all(model), model.predict(x, verbose=0), atol=ATOL)
    first = predictor._step
    other = dense_model(seed=1)
    np.testing.assert_allclose(predictor.predict_all(other), other.predict(x, verbose=0), atol=ATOL)
    assert predictor._step is not first and predictor.trace_count == 1
    predictor.predict_all(other)
    assert predictor.trace_count == 1


class SubclassedModel(keras.Model):
    def __init__(self):
        super().__init__()
        self.dense = keras.layers.Dense(3)

    def call(self, x):
        return {"logits": self.dense(x)}


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_unbuilt_models_without_declared_inputs_trace_once(jit_compile):
    x, _ = data(10)
    keras.utils.set_random_seed(0)
    for m in (keras.Sequential([keras.layers.Dense(3)]), SubclassedModel()):
        predictor = BatchedPredictor(m, x, batch_size=4, jit_compile=jit_compile)
        got = predictor.predict_all()
        want = m.predict(x, verbose=0)
        np.testing.assert_allclose(
            got if isinstance(m, keras.Sequential) else got["logits"],
            want if isinstance(m, keras.Sequential) else want["logits"],
            atol=ATOL,
        )
        assert predictor.trace_count == 1


def test_warmup_traces_once_before_the_first_pass(model):
    x, _ = data(11)
    predictor = BatchedPredictor(model, x, batch_size=4, jit_compile=True).warmup()
    assert predictor.trace_count == 1
    predictor.predict_all()
    assert predictor.trace_count == 1


# ---------------------------------------------------------------- structure


def test_list_and_dict_outputs_keep_their_structure():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    a, b = keras.layers.Dense(3)(inputs), keras.layers.Dense(2)(inputs)
    x, _ = data(13)
    for outputs in ([a, b], {"logits": a, "aux": b}):
        m = keras.Model(inputs, outputs)
        got = BatchedPredictor(m, x, batch_size=5).predict_all()
        want = m.predict(x, verbose=0)
        assert type(got) is type(want)
        if isinstance(want, dict):
            assert sorted(got) == sorted(want)
            for k in want:
                np.testing.assert_allclose(got[k], want[k], atol=ATOL)
        else:
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, atol=ATOL)


def test_dict_inputs_with_labels_and_return_x():
    keras.utils.set_random_seed(0)
    ia, ib = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    m = keras.Model({"a": ia, "b": ib}, keras.layers.Dense(2)(keras.layers.Concatenate()([ia, ib])))
    rng = np.random.default_rng(0)
    x = {"a": rng.normal(size=(9, 3)).astype("float32"), "b": rng.normal(size=(9, 2))}  # f64 b
    y = np.arange(9)
    predictor = BatchedPredictor(m, (x, y), batch_size=4, return_x=True, jit_compile=True)
    batches = list(predictor.iter_batches())
    np.testing.assert_allclose(
        np.concatenate([b.outputs for b in batches]), m.predict(x, verbose=0), atol=ATOL
    )
    np.testing.assert_array_equal(np.concatenate([b.x["b"] for b in batches]), x["b"])
    np.testing.assert_array_equal(np.concatenate([b.y for b in batches]), y)


@pytest.fixture
def mixed_float16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.slow
def test_mixed_precision_outputs_come_back_float32(mixed_float16):
    m = dense_model()
    assert m.layers[-1].compute_dtype == "float16"
    x, _ = data(21)
    for jit in (False, True):
        predictor = BatchedPredictor(m, x, batch_size=8, jit_compile=jit)
        got = predictor.predict_all()
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, m.predict(x, verbose=0).astype("float32"), atol=1e-2)
        assert predictor.trace_count == 1


# ---------------------------------------------------------------- fused output_fn


@pytest.mark.parametrize("jit_compile", [False, True])
def test_output_fn_softmax_top_k_is_fused(model, jit_compile):
    x, _ = data(19)

    def top2(logits):
        values, indices = tf.math.top_k(tf.nn.softmax(logits), k=2)
        return {"scores": values, "class_id": indices}

    got = BatchedPredictor(
        model, x, batch_size=8, output_fn=top2, jit_compile=jit_compile
    ).predict_all()
    probs = tf.nn.softmax(model.predict(x, verbose=0)).numpy()
    np.testing.assert_array_equal(got["class_id"], np.argsort(-probs, axis=1)[:, :2])
    np.testing.assert_allclose(got["scores"], np.sort(probs, axis=1)[:, ::-1][:, :2], atol=ATOL)
    assert got["class_id"].dtype == np.int32


def test_output_fn_segmentation_argmax():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    m = keras.Model(inputs, keras.layers.Conv2D(5, 3, padding="same")(inputs))
    x = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype("float32")
    got = BatchedPredictor(
        m, x, batch_size=4, jit_compile=True, output_fn=lambda t: tf.argmax(t, axis=-1)
    ).predict_all()
    np.testing.assert_array_equal(got, m.predict(x, verbose=0).argmax(-1))
    assert got.shape == (6, 8, 8)


def test_output_fn_box_decode_and_combined_nms():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((6,))
    boxes = keras.layers.Reshape((4, 1, 4))(keras.layers.Dense(16, activation="sigmoid")(inputs))
    scores = keras.layers.Reshape((4, 3))(keras.layers.Dense(12, activation="sigmoid")(inputs))
    m = keras.Model(inputs, {"boxes": boxes, "scores": scores})

    def decode_nms(out):
        mins = out["boxes"][..., :2] * 0.5
        decoded = tf.concat([mins, mins + out["boxes"][..., 2:] * 0.5], axis=-1)
        nms = tf.image.combined_non_max_suppression(decoded, out["scores"], 5, 5, 0.5, 0.1)
        return {"boxes": nms.nmsed_boxes, "scores": nms.nmsed_scores, "n": nms.valid_detections}

    x, _ = data(11)
    got = BatchedPredictor(m, x, batch_size=4, output_fn=decode_nms).predict_all()
    want = decode_nms(tf.nest.map_structure(tf.constant, m.predict(x, verbose=0)))
    assert got["boxes"].shape == (11, 5, 4)
    for k in want:
        np.testing.assert_allclose(got[k], want[k].numpy(), atol=ATOL)


def test_output_fn_must_be_batch_major(model):
    x, _ = data(5)
    predictor = BatchedPredictor(model, x, batch_size=4, output_fn=lambda t: tf.reduce_mean(t))
    with pytest.raises(ValueError, match="leading dim"):
        predictor.predict_all()


# ---------------------------------------------------------------- source types


def test_tf_data_unbatched_with_and_without_labels(model):
    x, y = data(23)
    want = model.predict(x, verbose=0)
    for ds, has_y in [
        (tf.data.Dataset.from_tensor_slices((x, y)), True),
        (tf.data.Dataset.from_tensor_slices(x), False),
    ]:
        predictor = BatchedPredictor(model, ds, batch_size=8)
        batches = list(predictor.iter_batches())
        np.testing.assert_allclose(np.concatenate([b.outputs for b in batches]), want, atol=ATOL)
        np.testing.assert_array_equal(np.concatenate([b.index for b in batches]), np.arange(23))
        if has_y:
            np.testing.assert_array_equal(np.concatenate([b.y for b in batches]), y)
        else:
            assert all(b.y is None for b in batches)


@pytest.mark.slow
@pytest.mark.parametrize("jit_compile", [False, True])
def test_tf_data_batched_keeps_or_rebatches(model, jit_compile):
    x, y = data(23)
    want = model.predict(x, verbose=0)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(10)
    own = BatchedPredictor(model, ds, jit_compile=jit_compile)
    for _ in range(2):
        np.testing.assert_allclose(own.predict_all(), want, atol=ATOL)
    assert own.batch_size == 10 and own.trace_count == 1
    rebatched = BatchedPredictor(model, ds, batch_size=4, jit_compile=jit_compile)
    assert [len(b) for b in rebatched.iter_batches()] == [4] * 5 + [3]
    np.testing.assert_allclose(rebatched.predict_all(), want, atol=ATOL)


class RecordingPyDataset(keras.utils.PyDataset):
    """A PyDataset that records which batches were read."""

    def __init__(self, x, y, batch_size, labels=True):
        super().__init__()
        self.x, self.y, self.bs, self.labels = x, y, batch_size, labels
        self.reads = []

    def __len__(self):
        return -(-len(self.x) // self.bs)

    def __getitem__(self, i):
        self.reads.append(i)
        s = slice(i * self.bs, (i + 1) * self.bs)
        return (self.x[s], self.y[s]) if self.labels else self.x[s]


def test_pydataset_source(model):
    x, y = data(22)
    want = model.predict(x, verbose=0)
    predictor = BatchedPredictor(model, RecordingPyDataset(x, y, 6), jit_compile=True)
    batches = list(predictor.iter_batches())
    np.testing.assert_allclose(np.concatenate([b.outputs for b in batches]), want, atol=ATOL)
    np.testing.assert_array_equal(np.concatenate([b.y for b in batches]), y)
    np.testing.assert_array_equal(np.concatenate([b.index for b in batches]), np.arange(22))
    split = BatchedPredictor(model, RecordingPyDataset(x, y, 6, labels=False), batch_size=4)
    assert [len(b) for b in split.iter_batches()] == [4, 2] * 3 + [4]
    np.testing.assert_allclose(split.predict_all(), want, atol=ATOL)


# ---------------------------------------------------------------- selection


@pytest.mark.slow
def test_max_samples_first_and_fixed_seed_subset(model):
    x, y = data(50)
    want = model.predict(x, verbose=0)
    first = BatchedPredictor(model, (x, y), batch_size=8, max_samples=20)
    index, out = first.predict_all(return_index=True)
    np.testing.assert_array_equal(index, np.arange(20))
    np.testing.assert_allclose(out, want[:20], atol=ATOL)

    sources = {
        "numpy": (x, y),
        "tf.data": tf.data.Dataset.from_tensor_slices((x, y)),
        "tf.data batched": tf.data.Dataset.from_tensor_slices((x, y)).batch(7),
    }
    seen = {}
    for name, src in sources.items():
        predictor = BatchedPredictor(
            model, src, batch_size=8, max_samples=20, selection="random", seed=3
        )
        runs = [predictor.predict_all(return_index=True) for _ in range(2)]
        np.testing.assert_array_equal(runs[0][0], runs[1][0])  # same samples every pass
        index, out = runs[0]
        assert len(index) == 20 and len(set(index)) == 20 and np.all(np.diff(index) > 0)
        np.testing.assert_allclose(out, want[index], atol=ATOL)
        seen[name] = index
    np.testing.assert_array_equal(seen["numpy"], seen["tf.data"])
    np.testing.assert_array_equal(seen["numpy"], seen["tf.data batched"])
    np.testing.assert_array_equal(
        BatchedPredictor(model, x, max_samples=20, selection="random", seed=3).selected_indices(),
        seen["numpy"],
    )


@pytest.mark.slow
def test_max_samples_on_tf_data_and_pydataset(model):
    x, y = data(30)
    want = model.predict(x, verbose=0)
    for src in (
        tf.data.Dataset.from_tensor_slices((x, y)),
        tf.data.Dataset.from_tensor_slices((x, y)).batch(4),
        RecordingPyDataset(x, y, 4),
    ):
        index, out = BatchedPredictor(model, src, max_samples=13).predict_all(return_index=True)
        np.testing.assert_array_equal(index, np.arange(13))
        np.testing.assert_allclose(out, want[:13], atol=ATOL)
    pyds = RecordingPyDataset(x, y, 4)
    index, out = BatchedPredictor(
        model, pyds, max_samples=10, selection="random", seed=1
    ).predict_all(return_index=True)
    assert len(index) == 10
    np.testing.assert_allclose(out, want[index], atol=ATOL)


# ---------------------------------------------------------------- bad sources


def test_wrong_rank_names_expected_and_got(model):
    x3 = np.zeros((4, 6, 1), "float32")
    with pytest.raises(ValueError, match=r"expects shape \(None, 6\).*\(None, 6, 1\)"):
        BatchedPredictor(model, x3)
    predictor = BatchedPredictor(None, np.zeros((4, 5), "float32"))  # checked at first use
    with pytest.raises(ValueError, match=r"expects shape \(None, 6\).*\(None, 5\)"):
        predictor.iter_batches(model)
    ds = tf.data.Dataset.from_tensor_slices(np.zeros((4, 2, 3, 6), "float32"))
    with pytest.raises(ValueError, match="rank 3.*rank 2"):
        BatchedPredictor(model, ds)


def test_mismatched_lengths_and_empty_sources(model):
    with pytest.raises(ValueError, match=r"same number of samples.*x: 5.*y: 4"):
        BatchedPredictor(model, (np.zeros((5, 6), "float32"), np.zeros(4)))
    with pytest.raises(ValueError, match=r"same number of samples.*x\['a'\]: 3.*x\['b'\]: 2"):
        BatchedPredictor(None, {"a": np.zeros((3, 1)), "b": np.zeros((2, 1))})
    with pytest.raises(ValueError, match="empty"):
        BatchedPredictor(model, np.zeros((0, 6), "float32"))
    with pytest.raises(ValueError, match="empty"):
        BatchedPredictor(model, tf.data.Dataset.from_tensor_slices(np.zeros((0, 6), "float32")))
    unknown_empty = tf.data.Dataset.from_tensor_slices(np.zeros((3, 6), "float32")).filter(
        lambda t: False
    )
    with pytest.raises(ValueError, match="empty"):
        BatchedPredictor(model, unknown_empty, batch_size=2).predict_all()
    with pytest.raises(ValueError, match=r"model expects 1 input\(s\), source x provides 2"):
        BatchedPredictor(model, ([np.zeros((3, 6)), np.zeros((3, 6))],))


def test_bad_options_and_types(model):
    x, _ = data(4)
    with pytest.raises(ValueError, match="max_samples"):
        BatchedPredictor(model, x, max_samples=0)
    with pytest.raises(ValueError, match="selection"):
        BatchedPredictor(model, x, selection="last")
    with pytest.raises(ValueError, match="needs max_samples"):
        BatchedPredictor(model, x, selection="random")
    with pytest.raises(ValueError, match="batch_size"):
        BatchedPredictor(model, x, batch_size=0)
    with pytest.raises(TypeError, match="source must be"):
        BatchedPredictor(model, "x.npy")
    with pytest.raises(TypeError, match=r"x\[0\]\[0\] must be a numpy array, got float"):
        BatchedPredictor(model, ([[1.0] * 6],))
    with pytest.raises(ValueError, match="no model"):
        BatchedPredictor(None, x).predict_all()


# ---------------------------------------------------------------- streaming


def test_results_stream_ahead_of_the_consumer(model):
    x, y = data(40)
    pyds = RecordingPyDataset(x, y, 4)  # 10 batches
    predictor = BatchedPredictor(model, pyds, prefetch=2)
    pyds.reads.clear()
    batches = predictor.iter_batches()
    assert pyds.reads == []  # nothing read before the first next()
    next(batches)
    deadline = time.time() + 10
    while len(set(pyds.reads)) < 3 and time.time() < deadline:
        time.sleep(0.01)  # the worker fills the queue while we "post-process"
    assert 3 <= len(set(pyds.reads)) <= 5  # ran ahead, but bounded: never all 10 batches
    rest = list(batches)
    assert len(rest) == 9


def test_breaking_out_stops_the_worker_thread(model):
    x, _ = data(64)
    before = threading.active_count()
    for _ in BatchedPredictor(model, x, batch_size=4).iter_batches():
        break
    deadline = time.time() + 5
    while threading.active_count() > before and time.time() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before


def test_errors_in_the_worker_reach_the_consumer(model):
    x, _ = data(9)

    def bad(t):
        raise RuntimeError("boom in output_fn")

    with pytest.raises(RuntimeError, match="boom in output_fn"):
        BatchedPredictor(model, x, batch_size=4, output_fn=bad).predict_all()


def test_synchronous_mode_matches(model):
    x, _ = data(17)
    got = BatchedPredictor(model, x, batch_size=4, prefetch=0).predict_all()
    np.testing.assert_allclose(got, model.predict(x, verbose=0), atol=ATOL)


# ---------------------------------------------------------------- distribution

DISTRIBUTED = textwrap.dedent(
    """
    import os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras
    from fastevalcb.predictor import BatchedPredictor

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    keras.utils.set_random_seed(0)
    with strategy.scope():
        inputs = keras.Input((6,))
        model = keras.Model(inputs, {"a": keras.layers.Dense(3)(inputs),
                                     "b": keras.layers.Dense(1)(inputs)})
    x = np.random.default_rng(0).normal(size=(37, 6)).astype("float32")
    want = model.predict(x, batch_size=8, verbose=0)
    for jit in (False, True):
        for src in (x, tf.data.Dataset.from_tensor_slices(x)):
            predictor = BatchedPredictor(model, src, batch_size=7, jit_compile=jit)
            for _ in range(3):
                index, got = predictor.predict_all(return_index=True)
                np.testing.assert_array_equal(index, np.arange(37))
                for k in want:
                    np.testing.assert_allclose(got[k], want[k], atol=1e-5)
            assert predictor.trace_count == 1, predictor.trace_count
            assert predictor._step.distributed and predictor._step.pad_to == 8

    # A KerasHub task: its preprocessor runs on the host, then the shards are split.
    try:
        import keras_hub
    except ImportError:
        keras_hub = None
    if keras_hub is not None:
        with strategy.scope():
            keras.utils.set_random_seed(0)
            backbone = keras_hub.models.ResNetBackbone(
                input_conv_filters=[64], input_conv_kernel_sizes=[3],
                stackwise_num_filters=[64, 8], stackwise_num_blocks=[1, 1],
                stackwise_num_strides=[1, 2], block_type="basic_block")
            converter = keras_hub.layers.ResNetImageConverter(image_size=(24, 24), scale=1 / 255)
            hub = keras_hub.models.ResNetImageClassifier(
                backbone=backbone, num_classes=5,
                preprocessor=keras_hub.models.ResNetImageClassifierPreprocessor(converter))
        images = np.random.default_rng(0).uniform(0, 255, size=(8, 40, 40, 3)).astype("float32")
        want = hub.predict(images, batch_size=4, verbose=0)
        for jit in (False, True):
            predictor = BatchedPredictor(hub, images, batch_size=3, jit_compile=jit)
            for _ in range(2):
                np.testing.assert_allclose(predictor.predict_all(), want, atol=1e-4)
            assert predictor.trace_count == 1 and predictor._step.prep.trace_count == 1
    print("DISTRIBUTED-OK")
    """
)


@pytest.mark.slow
def test_mirrored_strategy_two_logical_cpus_in_sample_order():
    proc = subprocess.run(
        [sys.executable, "-c", DISTRIBUTED], capture_output=True, text=True, timeout=300
    )
    assert "DISTRIBUTED-OK" in proc.stdout, proc.stderr[-4000:]
