"""fastevalcb.tables.artifacts: the run's lifetime (a hook that runs while the run still logs)
and a logged pred version leaving wandb's artifact cache."""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest
import wandb
from wandb.sdk.artifacts.staging import get_staging_dir

from fastevalcb.tables import ColumnarTable


@pytest.mark.parametrize("end", ["run.finish", "wandb.finish", "reinit"])
def test_on_run_finish_runs_while_the_run_still_logs(wandb_env, end):
    from fastevalcb.offline import OfflineRun
    from fastevalcb.tables import on_run_finish, run_finished

    run = wandb.init(project="canary", dir=str(wandb_env / "run"))
    states = []

    def log_last():
        states.append(run_finished(run))
        run.log({"last": 1})  # raises UsageError once the run is finished

    on_run_finish(run, log_last)
    if end == "run.finish":
        run.finish()
    elif end == "wandb.finish":
        wandb.finish()
    else:
        wandb.init(project="canary", dir=str(wandb_env / "run"), reinit="finish_previous")
        wandb.finish()
    assert states == [False] and run_finished(run)
    log = OfflineRun(Path(run.dir).parent).wait_complete()
    assert [r["last"] for r in log.history() if "last" in r] == [1]


def test_wandb_caches_artifacts_by_client_id_and_a_logged_pred_version_is_dropped(offline_run):
    """Canary: wandb's instance cache (artifact_instance_cache_by_client_id) holds every
    Artifact made; log_pred_artifact takes its version out again (memory per version)."""
    from fastevalcb.tables import log_pred_artifact
    from fastevalcb.tables._wandb import artifact_cache_by_client_id

    run, _ = offline_run
    cache = artifact_cache_by_client_id()
    probe = wandb.Artifact("probe", "x")
    assert cache.get(probe._client_id) is probe
    table = ColumnarTable(["a"])
    table.add_columns({"a": [1, 2]})
    art = log_pred_artifact(run, table, None, "evaluation", "eval_data", ["latest"], {})
    # The table JSON is staged (it outlives the artifact object and the process), so the
    # version leaves the cache.
    json_path = art.manifest.entries["eval_data.table.json"].local_path
    assert json_path.startswith(get_staging_dir())
    assert art._client_id not in cache
    assert not art._added_objs  # the table and its media objects are let go
    del art
    gc.collect()
    assert os.path.exists(json_path)
    assert table._artifact_target is None  # the table <-> artifact cycle is broken
