"""Backends: which Keras backend the compiled predict step runs on, and the JAX suite.

Keras fixes its backend when it is first imported, so everything JAX runs in a
subprocess with ``KERAS_BACKEND=jax``: the import check here, and ``tests/on_jax`` (the task
callbacks against ``model.predict`` on JAX) when this process is not already on JAX (CI's
``jax`` leg runs that folder directly). Torch is not installed; its refusal is decided
from the backend's name, tested here without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastevalcb import FastEvalInputError, _keras

HERE = Path(__file__).parent
ROOT = HERE.parent


def jax_env(**extra):
    env = dict(os.environ, KERAS_BACKEND="jax", PYTHONPATH=str(ROOT), **extra)
    env.pop("TF_USE_LEGACY_KERAS", None)
    return env


@pytest.mark.parametrize("backend", ["torch", "numpy", "openvino"])
def test_backends_without_a_step_are_refused_naming_the_backend_and_the_drop_in_base(backend):
    with pytest.raises(FastEvalInputError) as info:
        _keras.check_backend(backend, "ClassificationEvalCallback")
    message = str(info.value)
    assert f"KERAS_BACKEND={backend}" in message and repr(backend) in message
    assert "ClassificationEvalCallback" in message and "WandbEvalCallback" in message
    assert "KERAS_BACKEND=jax" in message


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_tensorflow_and_jax_have_a_step(backend):
    _keras.check_backend(backend, "BatchedPredictor")  # no error


def test_task_callbacks_refuse_an_unsupported_backend_at_construction(monkeypatch):
    import numpy as np

    from fastevalcb import ClassificationEvalCallback

    monkeypatch.setattr(_keras.keras3().backend, "backend", lambda: "torch")
    monkeypatch.setitem(sys.modules, "tf_keras", None)  # no tf_keras model can exist
    x, y = np.zeros((4, 8, 8, 3), "float32"), np.arange(4) % 2
    with pytest.raises(FastEvalInputError, match="'torch'.*WandbEvalCallback"):
        ClassificationEvalCallback((x, y), ["a", "b"])


IMPORT_CHECK = """
import sys
import fastevalcb
import keras
assert keras.backend.backend() == "jax"
heavy = sorted(m for m in ("tensorflow", "numba") if m in sys.modules)
print("HEAVY", heavy)
"""


@pytest.mark.slow
def test_import_under_jax_loads_neither_tensorflow_nor_numba():
    pytest.importorskip("jax")
    proc = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        capture_output=True,
        text=True,
        timeout=300,
        env=jax_env(),
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HEAVY []" in proc.stdout, proc.stdout


FIT_CHECK = """
import sys
import numpy as np
import keras
import wandb
from fastevalcb import ClassificationEvalCallback
run = wandb.init(project="jax-light")
x, y = np.random.default_rng(0).random((6, 8, 8, 3)).astype("float32"), np.arange(6) % 2
cb = ClassificationEvalCallback((x, y), ["a", "b"], batch_size=4, verbose=0)
model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(2)])
model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
model.fit(x, y, epochs=2, callbacks=[cb], verbose=0)
cb.flush()
print("VERSIONS", len(cb.logged_versions), "HEAVY",
      sorted(m for m in ("tensorflow", "numba") if m in sys.modules))
run.finish()
"""


@pytest.mark.slow
def test_a_jax_fit_on_arrays_never_imports_tensorflow(wandb_env):
    """Array sources, no KerasHub preprocessor: the whole fit, logging included, runs
    without TensorFlow (numba, the host kernels, is loaded by the task callback)."""
    pytest.importorskip("jax")
    proc = subprocess.run(
        [sys.executable, "-c", FIT_CHECK],
        capture_output=True,
        text=True,
        timeout=300,
        env=jax_env(),
        cwd=str(ROOT),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "VERSIONS 2 HEAVY ['numba']" in proc.stdout, proc.stdout + proc.stderr[-2000:]


@pytest.mark.slow
def test_the_jax_suite_passes_under_keras_backend_jax():
    pytest.importorskip("jax")
    if _keras.keras3().backend.backend() == "jax":
        pytest.skip("already on JAX: tests/on_jax runs in this session")
    pytest.importorskip("keras_hub")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(HERE / "on_jax"),
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "addopts=",
            "-W",
            "ignore::DeprecationWarning",
        ],
        capture_output=True,
        text=True,
        timeout=1500,
        env=jax_env(),
        cwd=str(ROOT),
    )
    tail = proc.stdout[-4000:]
    assert proc.returncode == 0, tail + proc.stderr[-2000:]
    assert " passed" in tail and "skipped" not in tail.splitlines()[-1], tail


def test_tensorflow_twins_of_keras_ops_agree_with_keras_ops():
    """The namespace a tf_keras model's post-processing uses next to another backend."""
    import numpy as np
    import tensorflow as tf

    keras = _keras.keras3()
    twins = _keras._tf_ops()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 5)).astype("float32")
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan  # (argmax over NaN differs between backends: rows flagged)
    cases = [
        ("argmax", (x,), {"axis": -1}),
        ("isfinite", (nan,), {}),
        ("round", (x * 3,), {}),
        ("min", (x[1],), {}),
        ("max", (x[1],), {}),
        ("reshape", (x, (2, -1)), {}),
        ("cast", (np.abs(x) * 10, "uint8"), {}),
        ("all", (x > -10,), {"axis": 1}),
        ("logical_and", (x > 0, x < 1), {}),
        ("where", (x[1] > 0, 0.5, 0.0), {}),
        ("ones", ((3,), "bool"), {}),
    ]
    for name, args, kwargs in cases:
        want = np.asarray(getattr(keras.ops, name)(*args, **kwargs))
        got = getattr(twins, name)(
            *[tf.constant(a) if isinstance(a, np.ndarray) else a for a in args], **kwargs
        ).numpy()
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert list(twins.shape(tf.constant(x)).numpy()) == list(keras.ops.shape(x))
    assert set(vars(twins)) == {name for name, _, _ in cases} | {"shape"}


def test_is_float_dtype_reads_numpy_tensorflow_and_jax_dtypes():
    import numpy as np
    import tensorflow as tf

    floating = [np.float32, np.dtype("float16"), tf.float32, tf.bfloat16, tf.float16]
    other = [np.int32, np.dtype(bool), tf.uint8, tf.int64, tf.string, tf.bool]
    try:
        import jax.numpy as jnp

        floating += [jnp.bfloat16, jnp.zeros(1).dtype]
        other += [jnp.zeros(1, "int32").dtype]
    except ImportError:
        pass
    assert [_keras.is_float_dtype(d) for d in floating] == [True] * len(floating)
    assert [_keras.is_float_dtype(d) for d in other] == [False] * len(other)


@pytest.mark.slow
def test_the_gpu_suite_on_jax_runs_only_the_compiled_variants(tmp_path):
    """``benchmarks/gpu_suite.py`` on JAX: the step is always a jax.jit, so ``jit_compile``
    off would time the same thing; the page names the backend."""
    pytest.importorskip("jax")
    pytest.importorskip("keras_hub")
    env = {k: v for k, v in jax_env(JAX_PLATFORMS="cpu").items() if not k.startswith("WANDB_")}
    env.update(TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "gpu_suite.py", "--quick", "--tasks", "classification"]
        + ["--out-dir", str(tmp_path)],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    suite = json.loads((tmp_path / "gpu.json").read_text())
    assert suite["machine"]["backend"] == "jax"
    assert [(r["jit_compile"], r["mixed"]) for r in suite["rows"]] == [(True, False), (True, True)]
    assert all(r["result"]["fastevalcb"]["until_written_s"] > 0 for r in suite["rows"])
    assert " on JAX " in (tmp_path / "gpu.md").read_text()
