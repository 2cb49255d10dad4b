"""A wandb release that renames or drops an internal a fast path uses: fastevalcb notices in
its one-time check, warns once naming the path and the wandb version, and records the same
run through wandb's public API.

The internals are taken away where fastevalcb reads them (the accessor in
``fastevalcb/tables/_wandb.py`` raises as a missing attribute would): wandb's own code keeps
its names, as it would in a release that renamed them.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import wandb

from fastevalcb import ClassificationEvalCallback, FastEvalWarning
from fastevalcb.tables import _wandb

pytestmark = pytest.mark.slow  # seconds a test: out of the fast loop (-m "not slow")

# accessor in _wandb -> the fast path whose check must then fail
GONE = [
    ("client_id", "entries"),
    ("added_local_paths", "entries"),
    ("replace_entries", "entries"),
    ("add_staged", "entries"),
    ("new_entry", "entries"),
    ("artifact_cache_by_client_id", "entries"),
    ("scope_manifest", "manifest"),
    ("manifest_file_threshold", "manifest"),
    ("write_manifest_file", "manifest"),
    ("column_type_map", "tables"),
    ("merge_type", "tables"),
    ("column_types_json", "tables"),
    ("json_helper", "tables"),
]


@pytest.fixture
def fresh_checks():
    _wandb.reset_checks()
    yield
    _wandb.reset_checks()


@pytest.mark.fast_path
@pytest.mark.parametrize("accessor, path", GONE, ids=[g[0] for g in GONE])
def test_a_missing_internal_falls_back_and_the_run_is_complete(
    accessor, path, fresh_checks, offline_run, tiny_classifier, monkeypatch
):
    def gone(*args, **kwargs):
        raise AttributeError(f"simulated: this wandb has no internal behind {accessor}()")

    monkeypatch.setattr(_wandb, accessor, gone)
    run, read = offline_run
    model, x, y = tiny_classifier
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cb = ClassificationEvalCallback(
            (x[:12], y[:12]), ["a", "b", "c"], batch_size=4, verbose=0, strict=True
        )
        model.fit(x, y, epochs=2, batch_size=10, callbacks=[cb], verbose=0)
        cb_versions = len(cb.logged_versions)
        run.finish()
    ours = [str(w.message) for w in caught if issubclass(w.category, FastEvalWarning)]
    fallbacks = [m for m in ours if "fast path" in m]
    assert any(
        f"fast path {path!r}" in m and wandb.__version__ in m and accessor in m for m in fallbacks
    ), ours
    assert len([m for m in fallbacks if f"fast path {path!r}" in m]) == 1  # once a process
    assert all("logging" not in m.lower() or "fast path" in m for m in ours), ours
    log = read()
    data = log.load_table(log.artifact("val"), "val_data")
    assert data.column("id") == list(range(12))
    versions = [a for a in log.artifacts() if a.name == f"run_{run.id}_pred"]
    assert len(versions) == 2 == cb_versions
    table = log.load_table(versions[-1], "eval_data")
    assert table.column("id") == list(range(12))
    assert [cell["path"] for cell in table.column("image")] == [
        cell["path"] for cell in data.column("image")
    ]
    for cell in table.column("image"):  # every image resolves to a recorded file
        owner, entry = log.resolve(versions[-1], cell["path"])
        assert entry.digest == log.artifact("val").entries[cell["path"]].digest
    assert np.isfinite(log.summary()["eval/accuracy"])
