"""``benchmarks/gpu_suite.py --quick`` starts, measures and writes both of its files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_quick_suite_writes_json_and_markdown(tmp_path):
    pytest.importorskip("keras_hub")  # the suite's models are KerasHub classes
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [
            sys.executable,
            "gpu_suite.py",
            "--quick",
            "--tasks",
            "classification,segmentation",
            "--out-dir",
            str(tmp_path),
        ],
        cwd=ROOT / "benchmarks",
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    suite = json.loads((tmp_path / "gpu.json").read_text())
    assert (
        suite["quick"]
        and [r["task"] for r in suite["rows"]] == ["classification"] * 4 + ["segmentation"] * 4
    )
    base = suite["rows"][0]
    assert (base["jit_compile"], base["mixed"]) == (False, False)
    result = base["result"]  # the base variant must run on any machine
    assert result["samples"] == 64 and result["forward"]["us_per_sample"] > 0
    assert result["fastevalcb"]["until_written_s"] >= result["fastevalcb"]["train_thread_s"] > 0
    assert result["stock"]["until_written_s"] > 0
    assert all("result" in r or "error" in r or "skipped" in r for r in suite["rows"])
    md = (tmp_path / "gpu.md").read_text()
    assert md.startswith("# GPU suite") and md.count("| ResNet-50 ImageClassifier |") == 4


@pytest.mark.slow
def test_without_tensorflow_the_models_drop_their_preprocessor_and_stock_is_not_timed(
    wandb_env, monkeypatch
):
    """A machine without TensorFlow (the GPU machines here): KerasHub's predict cannot map a
    preprocessor and stock cannot subclass tf.keras; the suite says so on its page."""
    pytest.importorskip("keras_hub")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_suite

    monkeypatch.setattr(gpu_suite, "HAVE_TF", False)
    assert gpu_suite.build("classification", 32, 10, quick=True).preprocessor is None
    suite = gpu_suite.run_suite(quick=True, repeats=1, budget_s=600, tasks=["classification"])
    base = suite["rows"][0]
    assert (base["jit_compile"], base["mixed"]) == (False, False)
    assert base["result"]["stock"] is None  # float32, jit off: stock's variant, not timed
    assert base["result"]["forward"]["us_per_sample"] > 0
    md = gpu_suite.markdown(suite)
    assert gpu_suite.NO_TF in md and "| - | - |" in md
