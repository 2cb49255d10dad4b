"""Helpers of the task callback tests (fixtures live in conftest.py)."""

from __future__ import annotations

import keras


class EpochRecorder(keras.callbacks.Callback):
    """Records which epochs began, to prove an error came before epoch 1."""

    def __init__(self):
        super().__init__()
        self.epochs: list[int] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs.append(epoch)


def pred_versions(run_log, run_id):
    return run_log.artifacts(f"run_{run_id}_pred")


def metric_definitions(run_log) -> dict[str, str]:
    """``{metric name or glob: step metric}`` from the run's define_metric records."""
    out = {}
    for record in run_log.records:
        if record.HasField("metric"):
            name = record.metric.name or record.metric.glob_name
            out[name] = record.metric.step_metric
    return out


class Diverge(keras.callbacks.Callback):
    """Sets the model's last layer to NaN at the end of epoch ``at`` (list it before ours)."""

    def __init__(self, at: int):
        super().__init__()
        self.at = at

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at:
            layer = self.model.layers[-1]
            layer.set_weights([w * float("nan") for w in layer.get_weights()])


def fast_eval_warnings(caught) -> list[str]:
    from fastevalcb import FastEvalWarning

    return [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]


def tmpfs_unavailable() -> str | None:
    """Why a private mount namespace with a tmpfs cannot be made here (None: it can)."""
    import shutil
    import subprocess

    if shutil.which("unshare") is None:
        return "unshare is not installed"
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m none /mnt"],
        check=False,
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0:
        return f"cannot mount a tmpfs in a private mount namespace: {probe.stderr.strip()}"
    return None


def run_on_small_tmpfs(tmp_path, script: str, *args: str, size: str = "8m", timeout: float = 300):
    """Run ``script`` in a fresh process (its own wandb service) in a private mount
    namespace where ``<tmp_path>/small`` is a tmpfs of ``size``; returns its RESULT dict.
    Skips where no tmpfs can be mounted (fails on CI, which runs as root)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    import pytest

    why = tmpfs_unavailable()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the tmpfs tests as root: {why}")
        pytest.skip(why)
    small = tmp_path / "small"
    small.mkdir()
    path = tmp_path / "script.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    command = (
        f"mount -t tmpfs -o size={size} fastevalcb-small {small} && "
        f"exec {sys.executable} {path} {small} {' '.join(args)}"
    )
    proc = subprocess.run(
        ["unshare", "-m", "sh", "-c", command],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    assert proc.returncode == 0 and "RESULT" in proc.stdout, proc.stderr[-4000:]
    return json.loads(proc.stdout.split("RESULT", 1)[1])
