"""A SIGKILL leaves an offline run that ``wandb sync`` can take.

The training process is killed at three points (while the data table is being written,
while a version is being written, between logs); then the run as it lies on disk is
checked by ``run_consistency.sync_problems``: every recorded artifact's staged files exist
with their recorded size and md5, no reference points to an unrecorded artifact, no table
names a media file that is not an entry. Each point is reached for sure, not by timing:
the child stops there (a marker file, then a long sleep) and is killed while it waits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from fastevalcb.offline import OfflineRun, find_runs
from tests.helpers.run_consistency import sync_problems

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")

_CHILD = textwrap.dedent("""
    import os, sys, time
    point, marker = sys.argv[1], sys.argv[2]
    import keras, wandb
    from fastevalcb import ClassificationEvalCallback
    from fastevalcb.synthetic import make_shapes

    def stop_here():
        open(marker, "w").close()
        time.sleep(120)  # killed meanwhile

    class Stops(ClassificationEvalCallback):
        def _data_columns_for(self, index, images, labels):
            columns = super()._data_columns_for(index, images, labels)
            if point == "data table" and index[0] > 0:  # the first batch is staged
                stop_here()
            return columns

        def _pred_columns_for(self, version, batch, labels, base_images):
            columns = super()._pred_columns_for(version, batch, labels, base_images)
            if point == "version" and version.epoch == 1 and version.samples > 0:
                stop_here()  # half of epoch 1's table is written
            return columns

    class Between(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if point == "between logs" and epoch == 2:
                cb.flush()
                stop_here()

    shapes = make_shapes(64, 16, seed=3)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    wandb.init(project="killed")
    cb = Stops((shapes.images, shapes.labels), shapes.class_names, verbose=0, batch_size=32)
    model.fit(shapes.images, shapes.labels, epochs=4, batch_size=16,
              callbacks=[cb, Between()], verbose=0)
    print("NOT KILLED")
""")


def _settled(path: Path, quiet_s: float = 2.0, timeout: float = 30.0) -> None:
    """Wait until ``path`` has not grown for ``quiet_s`` (wandb-core finishing its writes)."""
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = path.stat().st_size if path.exists() else -1
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.2)


def _kill_at(tmp_path: Path, point: str) -> OfflineRun:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    for var, sub in (
        ("WANDB_DIR", "runs"),
        ("WANDB_CONFIG_DIR", "config"),
        ("WANDB_DATA_DIR", "data"),
        ("WANDB_CACHE_DIR", "cache"),
        ("WANDB_ARTIFACT_DIR", "artifacts"),
    ):
        (tmp_path / sub).mkdir()
        env[var] = str(tmp_path / sub)
    env.update(WANDB_MODE="offline", WANDB_SILENT="true", TF_CPP_MIN_LOG_LEVEL="3")
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")])
    script, marker = tmp_path / "child.py", tmp_path / "stopped"
    script.write_text(_CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), point, str(marker)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                out, err = proc.communicate(timeout=30) if proc.poll() is not None else ("", "")
                pytest.fail(f"the child never reached {point!r}: {out!r} {err[-3000:]!r}")
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)  # the training process only, as a kill -9 would
        proc.wait(timeout=30)
        run_dir = find_runs(tmp_path / "runs")[-1]
        _settled(next(run_dir.glob("run-*.wandb")))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=30)
        try:  # what the child started and left (its wandb-core), in its own session
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return OfflineRun(run_dir)


# What the log holds after a kill is wandb-core's: it buffers the log in 32 KiB blocks and
# drops the buffer when its client dies (see /work/notes/reliability.md), so even records
# handed over before the kill (a flushed version, the run record) may be missing. The
# tests assert what must hold whatever it kept: no record is half of one, and it syncs.


def test_killed_while_the_data_table_is_written(tmp_path):
    log = _kill_at(tmp_path, "data table")
    assert log.artifacts("val") == []  # not recorded: it was half-staged
    assert sync_problems(log.run_dir) == []


def test_killed_while_a_version_is_written(tmp_path):
    log = _kill_at(tmp_path, "version")
    assert len(log.artifacts("val")) <= 1
    versions = [a for a in log.artifacts() if a.name.endswith("_pred")]
    assert [v.metadata["epoch"] for v in versions] in ([], [0])  # never epoch 1's half
    assert sync_problems(log.run_dir) == []


def test_killed_between_logs(tmp_path):
    log = _kill_at(tmp_path, "between logs")
    versions = [a for a in log.artifacts() if a.name.endswith("_pred")]
    assert [v.metadata["epoch"] for v in versions] in ([], [0], [0, 1])  # in order
    assert sync_problems(log.run_dir) == []
    if not log.artifacts("val"):
        pytest.skip("wandb-core kept no artifact record to tamper with")
    # The checker finds what it is meant to: a staged file changed after it was recorded.
    table = log.artifact("val").entries["val_data.table.json"]
    Path(table.local_path).chmod(0o644)
    with open(table.local_path, "ab") as f:
        f.write(b" ")
    assert any(
        "val_data.table.json" in p and "bytes, recorded" in p for p in sync_problems(log.run_dir)
    )
