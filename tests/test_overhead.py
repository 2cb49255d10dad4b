"""``fastevalcb overhead``: forward alone, ours and stock's log on a small saved model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from fastevalcb import overhead
from fastevalcb.synthetic import make_shapes

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16


def _classifier():
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )


def _cli(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run(
        [sys.executable, "-m", "fastevalcb", "overhead", *map(str, args)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def _check_side(side, repeats):
    assert side["until_written_s"] >= side["train_thread_s"] > 0
    assert all(len(v) == repeats for v in side["runs"].values())
    assert side["until_written_s"] == min(side["runs"]["until_written_s"])


def test_cli_measures_a_saved_classifier_and_writes_json(tmp_path):
    shapes = make_shapes(40, SIZE, seed=0)
    _classifier().save(tmp_path / "model.keras")
    np.savez(tmp_path / "val.npz", x=shapes.images, y=shapes.labels)
    proc = _cli(
        tmp_path,
        "--model",
        "model.keras",
        "--data",
        "val.npz",
        "--task",
        "classification",
        "--max-samples",
        "30",
        "--batch-size",
        "8",
        "--repeats",
        "2",
        "--stock",
        "--out",
        "out.json",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "fastevalcb: until written" in proc.stdout and "stock" in proc.stdout
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["samples"] == 30 and result["task"] == "classification"
    assert result["image_shape"] == [SIZE, SIZE, 3]
    forward = result["forward"]
    assert forward["s"] > 0 and forward["us_per_sample"] == pytest.approx(forward["s"] / 30 * 1e6)
    ours, stock = result["fastevalcb"], result["stock"]
    _check_side(ours, 2)
    _check_side(stock, 2)
    assert ours["worker_cpu_us_per_sample"] > 0 and ours["data_table_s"] > 0
    assert stock["predict_s"] > 0
    assert ours["until_written_over_forward"] == pytest.approx(
        ours["until_written_s"] / forward["s"]
    )
    # The runs were throwaway: nothing is left where it ran.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.keras", "out.json", "val.npz"]


def test_cli_names_a_missing_data_key(tmp_path):
    _classifier().save(tmp_path / "model.keras")
    np.savez(tmp_path / "val.npz", x=np.zeros((4, SIZE, SIZE, 3), np.uint8))
    proc = _cli(tmp_path, "--model", "model.keras", "--data", "val.npz", "--task", "detection")
    assert proc.returncode == 2
    assert "needs the keys ['x', 'boxes', 'labels'] for detection" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_measure_segmentation_in_process(wandb_env):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 1),
        ]
    )
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, SIZE, SIZE, 3)).astype("uint8")
    y = rng.integers(0, 4, (12, SIZE, SIZE)).astype("uint8")
    result = overhead.measure(model, (x, y), "segmentation", batch_size=4, repeats=1, stock=True)
    assert result["samples"] == 12 and result["forward"]["s"] > 0
    _check_side(result["fastevalcb"], 1)
    _check_side(result["stock"], 1)
    assert os.environ["WANDB_DIR"] == str(wandb_env / "run")  # the caller's env, restored
    # A later run of the caller's links no log into the removed throwaway folder.
    import wandb

    wandb.init(project="after", dir=str(wandb_env / "run")).finish()
    links = [p for p in (wandb_env / "run").rglob("*") if p.is_symlink()]
    assert all(p.exists() for p in links), [str(p) for p in links if not p.exists()]
    assert "µs/sample" in overhead.table(result)


def test_measure_refuses_an_active_run(offline_run):
    with pytest.raises(overhead.OverheadError, match="a W&B run is active"):
        overhead.measure(
            _classifier(), (np.zeros((2, SIZE, SIZE, 3)), np.zeros(2)), "classification"
        )


def test_the_segmentation_floor_brings_class_maps_not_scores():
    """The forward floor of segmentation takes the argmax the callback's step takes: one
    uint8 a pixel reaches the host (the float scores would time a transfer)."""
    assert overhead._floor_fn("classification", ["a", "b"], {}) is None
    assert overhead._floor_fn("detection", ["a", "b"], {}) is None
    floor = overhead._floor_fn("segmentation", ["a", "b", "c"], {})
    scores = np.random.default_rng(0).normal(size=(2, 4, 5, 3)).astype("float32")
    out = floor(keras.ops.convert_to_tensor(scores))
    maps = keras.ops.convert_to_numpy(out["class_maps"])
    assert maps.dtype == np.uint8 and maps.shape == (2, 4, 5)
    np.testing.assert_array_equal(maps, scores.argmax(-1))
