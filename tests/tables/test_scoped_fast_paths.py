"""fastevalcb's fast paths change nothing process-wide: a user's artifact logged while our
worker logs a large version is recorded exactly as wandb records it without fastevalcb;
no wandb class, module constant or the garbage collector is touched."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import wandb

from fastevalcb.offline import OfflineRun

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")

USER_FILES = 1_200  # past wandb's file threshold for our manifests, below its own

WRITE_USER_FILES = textwrap.dedent("""
    import os, sys
    folder = sys.argv[1]
    os.makedirs(folder, exist_ok=True)
    for i in range({n}):
        with open(os.path.join(folder, f"w{{i:05d}}.bin"), "wb") as f:
            f.write(b"weights %d\\n" % i * 7)
""").format(n=USER_FILES)

LOG_USER_ARTIFACT_ALONE = textwrap.dedent("""
    import sys, wandb
    run = wandb.init(project="scoped", dir=sys.argv[2])
    art = wandb.Artifact("checkpoint", type="model")
    art.add_dir(sys.argv[1])
    run.log_artifact(art)
    run.finish()
    import fastevalcb  # noqa: imported only after: not loaded while logging
""")


def _user_record(log):
    """The user's artifact as the run recorded it: entries, digest, how the manifest went."""
    (record,) = [
        r.artifact
        for r in log.records
        if r.HasField("artifact") and r.artifact.name == "checkpoint"
    ]
    art = log.artifact("checkpoint")
    entries = {path: (e.digest, e.size) for path, e in art.entries.items()}
    return {
        "entries": entries,
        "digest": art.digest,
        "as_file": bool(record.manifest.manifest_file_path),
        "inline_entries": len(record.manifest.contents),
    }


def _pred_version_rows(n):
    """A data artifact of ``n`` staged images and a pred version of ``n`` reference rows."""
    from fastevalcb.media import build_images
    from fastevalcb.tables import (
        IMAGE_DIR,
        IMAGE_SUFFIX,
        ImageColumn,
        MediaFiles,
        MediaIndex,
        Stager,
        StreamedTable,
        pred_artifact,
    )

    data = wandb.Artifact("val", "dataset")
    stager = Stager(data)
    pixels = np.random.default_rng(0).integers(0, 255, (n, 2, 2, 3), dtype=np.uint8)
    images = build_images(pixels, stager=stager, compress_level=None)
    files = MediaFiles.of(images, stager, IMAGE_DIR, IMAGE_SUFFIX)
    index = MediaIndex.from_files(data, [files])
    return data, files, index, StreamedTable, ImageColumn, pred_artifact


@pytest.mark.fast_path
def test_a_user_artifact_logged_beside_our_version_is_wandbs_own(wandb_env):
    user_files = wandb_env / "checkpoint"
    subprocess.run([sys.executable, "-c", WRITE_USER_FILES, str(user_files)], check=True)
    alone = wandb_env / "alone"
    alone.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run(
        [sys.executable, "-c", LOG_USER_ARTIFACT_ALONE, str(user_files), str(alone)],
        check=True,
        env=env,
        timeout=300,
    )
    expected = _user_record(OfflineRun.latest(alone).wait_complete())
    assert expected["inline_entries"] == USER_FILES and not expected["as_file"]

    from fastevalcb.tables import log_data_artifact, log_pred_artifact

    beside = wandb_env / "beside"
    beside.mkdir()
    run = wandb.init(project="scoped", dir=str(beside))
    data, files, index, StreamedTable, ImageColumn, pred_artifact = _pred_version_rows(10_000)
    from fastevalcb.tables import ColumnarTable

    data_table = ColumnarTable(["id"])
    data_table.add_columns({"id": list(range(10))})
    log_data_artifact(run, data_table, "val", "dataset", "val_data", artifact=data, index=index)
    gc_before = gc.isenabled()
    started, overlapped = threading.Event(), []

    def log_version():  # what the logging worker does for a 10,000-row version
        table = StreamedTable(["id", "image"], pred_artifact(run), index)
        for start in range(0, len(files), 1000):
            rows = slice(start, start + 1000)
            table.add_columns(
                {"id": list(range(start, start + 1000)), "image": ImageColumn(files, rows)}
            )
        started.set()
        log_pred_artifact(run, table, index, "evaluation", "eval_data", ["latest"], {})

    art = wandb.Artifact("checkpoint", type="model")
    art.add_dir(str(user_files))
    worker = threading.Thread(target=log_version, name="fastevalcb-logger")
    worker.start()
    started.wait()
    overlapped.append(worker.is_alive())
    run.log_artifact(art)  # the training thread, while ours is being logged
    assert gc.isenabled() == gc_before
    worker.join()
    run.finish()
    log = OfflineRun.latest(beside).wait_complete()
    assert _user_record(log) == expected
    (version,) = [a for a in log.artifacts() if a.name.startswith("run_")]
    assert len(version.entries) == 10_001  # the table and a reference a row
    (ours,) = [
        r.artifact
        for r in log.records
        if r.HasField("artifact") and r.artifact.name.startswith("run_")
    ]
    assert ours.manifest.manifest_file_path  # ours went as wandb's manifest file
    assert overlapped == [True], "the user's artifact was not logged while ours was"


def test_no_wandb_class_or_constant_is_changed_by_logging(offline_run, tiny_classifier):
    from wandb.sdk.artifacts.artifact_manifests.artifact_manifest_v1 import ArtifactManifestV1
    from wandb.sdk.interface import interface

    from fastevalcb import ClassificationEvalCallback

    before = (
        interface.MANIFEST_FILE_SIZE_THRESHOLD,
        interface.InterfaceBase._write_artifact_manifest_file,
        ArtifactManifestV1.digest,
        ArtifactManifestV1.__len__,
    )
    seen = []

    class Watch(ClassificationEvalCallback):
        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            seen.append(
                (
                    interface.MANIFEST_FILE_SIZE_THRESHOLD,
                    interface.InterfaceBase._write_artifact_manifest_file,
                    ArtifactManifestV1.digest,
                    ArtifactManifestV1.__len__,
                    gc.isenabled(),
                )
            )

    run, read = offline_run
    model, x, y = tiny_classifier
    cb = Watch((x, y), ["a", "b", "c"], verbose=0)
    model.fit(x, y, epochs=2, batch_size=8, callbacks=[cb], verbose=0)
    after = (
        interface.MANIFEST_FILE_SIZE_THRESHOLD,
        interface.InterfaceBase._write_artifact_manifest_file,
        ArtifactManifestV1.digest,
        ArtifactManifestV1.__len__,
    )
    assert after == before
    assert seen and all(s == (*before, True) for s in seen)
    log = read()
    assert json.dumps(log.summary().get("eval/accuracy")) != "null"
