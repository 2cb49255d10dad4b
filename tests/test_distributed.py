"""Multi-worker training: two tf_keras workers on 127.0.0.1, chief-only W&B I/O.

The cluster tests start real worker processes (tests/helpers/multiworker_worker.py), each with its
``TF_CONFIG``, under ``MultiWorkerMirroredStrategy`` on free loopback ports, all writing to
one shared W&B folder; a one-process reference run trains the same model on the same data
(learning rate 0, so the same weights) next to them. They assert what the runs recorded:
exactly one offline run, whose data table and pred versions equal the reference's, rows in
sample order. A hang is bounded: each worker dumps its stacks and exits on its own
(faulthandler), and the harness signals, dumps and kills what is left. The role and
TF_CONFIG rules are tested in-process.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import wandb

from fastevalcb import ClassificationEvalCallback, FastEvalInputError, distributed
from fastevalcb.offline import find_runs
from tests.helpers.wandb_env import offline_wandb_env

HERE = Path(__file__).resolve().parent
WORKER = "tests.helpers.multiworker_worker"  # run as a module from the repository root
TIMEOUT_S = 200  # the whole cluster; the pytest-timeout mark is a backstop above it


# --------------------------------------------------------------------- roles (in-process)


def _tf_config(cluster, task_type, index):
    return json.dumps({"cluster": cluster, "task": {"type": task_type, "index": index}})


@pytest.mark.parametrize(
    "cluster, task, chief",
    [
        ({"worker": ["a:1", "b:2"]}, ("worker", 0), True),
        ({"worker": ["a:1", "b:2"]}, ("worker", 1), False),
        ({"chief": ["c:0"], "worker": ["a:1"]}, ("chief", 0), True),
        ({"chief": ["c:0"], "worker": ["a:1"]}, ("worker", 0), False),
    ],
)
def test_tf_config_names_the_chief(cluster, task, chief):
    role = distributed.role_from_tf_config(_tf_config(cluster, *task))
    assert role == distributed.Role(True, chief, task[0], task[1], 2)


@pytest.mark.parametrize(
    "text",
    ["", "not json", '{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}'],
)
def test_no_cluster_or_one_worker_is_a_single_process(text):
    assert distributed.role_from_tf_config(text) == distributed.SINGLE


def test_non_chief_worker_constructs_without_a_run(monkeypatch, tiny_classifier):
    pytest.importorskip("tf_keras")
    _, x, y = tiny_classifier
    assert wandb.run is None
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    monkeypatch.setenv("TF_CONFIG", _tf_config(cluster, "worker", 1))
    callback = ClassificationEvalCallback((x, y), ["a", "b", "c"])
    assert callback.logged_versions == []
    # The chief of the same cluster, and a single process, still need a run.
    monkeypatch.setenv("TF_CONFIG", _tf_config(cluster, "worker", 0))
    with pytest.raises(wandb.Error, match=r"wandb\.init\(\)"):
        ClassificationEvalCallback((x, y), ["a", "b", "c"])
    monkeypatch.delenv("TF_CONFIG")
    with pytest.raises(wandb.Error, match=r"wandb\.init\(\)"):
        ClassificationEvalCallback((x, y), ["a", "b", "c"])


def test_keras3_only_multi_worker_is_refused_at_construction(
    monkeypatch, offline_run, tiny_classifier
):
    _, x, y = tiny_classifier
    monkeypatch.delitem(sys.modules, "tf_keras", raising=False)  # only Keras 3 is loaded
    cluster = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}
    for index in (0, 1):
        monkeypatch.setenv("TF_CONFIG", _tf_config(cluster, "worker", index))
        with pytest.raises(FastEvalInputError, match=r"keras#20585.*TF_USE_LEGACY_KERAS=1"):
            ClassificationEvalCallback((x, y), ["a", "b", "c"])


def test_multi_worker_eval_is_checked(offline_run, tiny_classifier):
    _, x, y = tiny_classifier
    with pytest.raises(ValueError, match=r"multi_worker_eval must be one of .*'everywhere'"):
        ClassificationEvalCallback((x, y), ["a", "b", "c"], multi_worker_eval="everywhere")


def test_for_each_draws_every_item_after_a_failure():
    drawn = []

    def items():
        for i in range(4):
            drawn.append(i)
            yield i

    def fail_on_one(i):
        if i == 1:
            raise OSError("boom")

    with pytest.raises(OSError, match="boom"):
        distributed.for_each(items(), fail_on_one)
    assert drawn == [0, 1, 2, 3]
    drawn.clear()
    with pytest.raises(OSError, match="boom"):
        distributed.for_each(items(), fail_on_one, drain=False)
    assert drawn == [0, 1]


# ------------------------------------------------------------------- loopback cluster


def _free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _env(wandb_dir: Path, tf_config: str | None, keras3: bool) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "TF_USE_LEGACY_KERAS")}
    if not keras3:  # tf.keras is tf_keras (importing tensorflow imports it)
        env["TF_USE_LEGACY_KERAS"] = "1"
    env.update(
        TF_CPP_MIN_LOG_LEVEL="3",
        PYTHONPATH=str(HERE.parent),
        **offline_wandb_env(wandb_dir),
    )
    if tf_config is not None:
        env["TF_CONFIG"] = tf_config
    return env


def _launch(folder: Path, name: str, config: dict, tf_config: str | None, wandb_dir: Path):
    config = dict(
        {"hang_after_s": TIMEOUT_S - 20},
        **config,
        out=str(folder / f"{name}.json"),
        multi_worker=tf_config is not None,
    )
    (folder / f"{name}.config.json").write_text(json.dumps(config))
    log = open(folder / f"{name}.log", "w")
    env = _env(wandb_dir, tf_config, keras3=config.get("keras") == "keras3")
    proc = subprocess.Popen(
        [sys.executable, "-m", WORKER, str(folder / f"{name}.config.json")],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=str(HERE.parent),
    )
    return proc, log


def _tail(path: Path, lines=60) -> str:
    text = path.read_text(errors="replace").splitlines()
    keep = [t for t in text if not t.startswith(("I0000", "W0000", "WARNING: All log"))]
    return "\n".join(keep[-lines:])


def run_cluster(
    tmp_path: Path,
    config: dict,
    reference: bool = True,
    workers: int = 2,
    timeout_s: float = TIMEOUT_S,
):
    """Start ``workers`` MWMS workers (and a one-process reference run) with ``config``.

    Past ``timeout_s`` it signals every live process to dump its stacks, kills them and
    fails the test with those stacks.

    Returns:
        ``(results, reference_result)``: each worker's JSON (index = task index), and the
        reference's (or None). Results carry ``rc`` and ``log`` (the output's tail).
    """
    ports = _free_ports(workers)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    procs = []
    for i in range(workers):
        procs.append(
            _launch(
                tmp_path,
                f"worker{i}",
                config,
                _tf_config(cluster, "worker", i),
                tmp_path / "cluster",
            )
        )
    if reference:
        procs.append(_launch(tmp_path, "reference", config, None, tmp_path / "single"))
    deadline = time.monotonic() + timeout_s
    try:
        for proc, _ in procs:
            proc.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack
        time.sleep(2)
        names = [f"worker{i}" for i in range(workers)] + (["reference"] if reference else [])
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stacks = "\n\n".join(f"== {n}\n{_tail(tmp_path / f'{n}.log', 200)}" for n in names)
        pytest.fail(f"the cluster did not finish in {timeout_s} s; stacks:\n{stacks}")
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
    out = []
    for i, (proc, _) in enumerate(procs):
        name = f"worker{i}" if i < workers else "reference"
        path = tmp_path / f"{name}.json"
        result = json.loads(path.read_text()) if path.exists() else {}
        result.update(rc=proc.returncode, log=_tail(tmp_path / f"{name}.log"))
        out.append(result)
    return out[:workers], (out[workers] if reference else None)


def _assert_ok(*results):
    for r in results:
        assert r["rc"] == 0 and r["error"] is None, r["log"]


def _one_run(folder: Path):
    from fastevalcb.offline import OfflineRun

    runs = find_runs(folder / "run")
    assert len(runs) == 1, f"expected exactly one W&B run, got {runs}"
    return OfflineRun(runs[0]).wait_complete()


def _assert_chief_only_io(results, tmp_path):
    chief, other = results
    assert chief["is_chief"] and chief["has_run"] and not other["is_chief"]
    assert not other["has_run"] and other["logged_versions"] == [] and other["warnings"] == []
    return _one_run(tmp_path / "cluster")


def _assert_sample_order(run, table="eval_data", id_column="id", samples=11):
    for version in run.artifacts(type="evaluation"):
        ids = run.load_table(version, table).column(id_column)
        assert ids == list(range(samples)), (sorted(version.aliases), ids)


needs_tf_keras = pytest.mark.skipif(
    __import__("importlib").util.find_spec("tf_keras") is None, reason="tf_keras not installed"
)


def cluster_test(fn):
    """A loopback-cluster test: tf_keras, slow, bounded in time."""
    for mark in (
        needs_tf_keras,
        pytest.mark.tf_keras,
        pytest.mark.slow,
        pytest.mark.timeout(TIMEOUT_S + 40),
    ):
        fn = mark(fn)
    return fn


def _same_as_reference(run, tmp_path):
    """The cluster's run logged the one-process run's tables, versions and metrics."""
    from tests.helpers.tf_keras_twins import assert_same, assert_same_runs

    reference = _one_run(tmp_path / "single")
    last = assert_same_runs(reference, run)
    metrics = [_eval_metrics(r) for r in (reference, run)]
    assert_same(metrics[0], metrics[1], "metrics")
    return last


def _eval_metrics(run):
    # a chart table's artifact_path names its run's own artifact: compared by digest
    rows = [
        {k: v for k, v in row.items() if k.startswith("eval/") and not k.endswith("artifact_path")}
        for row in run.history()
    ]
    return [row for row in rows if row]


@cluster_test
@pytest.mark.parametrize("mode", ["sharded", "chief_only"])
def test_two_workers_log_one_run_equal_to_one_process(tmp_path, mode):
    results, reference = run_cluster(
        tmp_path, {"callback": "classification", "mode": mode, "log_every_n_batches": 1}
    )
    _assert_ok(*results, reference)
    run = _assert_chief_only_io(results, tmp_path)
    last = _same_as_reference(run, tmp_path)
    assert len(last.rows) == 11
    assert len(_eval_metrics(run)) == 4  # one metrics row per version, equal to the reference
    _assert_sample_order(run)
    # step-1, epoch-0 (step 2), step-3, epoch-1 (step 4): per-N-batch logs on both workers
    aliases = [sorted(a.aliases) for a in run.artifacts(type="evaluation")]
    assert aliases == [
        ["latest", "step-1"],
        ["epoch-0", "latest"],
        ["latest", "step-3"],
        ["epoch-1", "latest"],
    ]
    assert results[0]["epochs"] == results[1]["epochs"] == [0, 1]


@cluster_test
def test_stock_subclass_on_two_workers_logs_one_run_equal_to_one_process(tmp_path):
    # wandb's documented example: model.predict in add_model_predictions runs on every
    # worker (it is a collective); built inside strategy.scope() this time.
    results, reference = run_cluster(tmp_path, {"callback": "stock", "in_scope": True})
    _assert_ok(*results, reference)
    run = _assert_chief_only_io(results, tmp_path)
    last = _same_as_reference(run, tmp_path)
    assert len(last.rows) == 11
    _assert_sample_order(run, id_column="idx")
    assert [sorted(a.aliases) for a in run.artifacts(type="evaluation")] == [
        ["epoch-0", "latest"],
        ["epoch-1", "latest"],
    ]


@cluster_test
@pytest.mark.parametrize("callback", ["classification", "stock"])
def test_a_failed_write_on_the_chief_skips_that_version_only(tmp_path, callback):
    # The chief's first pred-version write raises: it warns, and both workers go on through
    # the same collectives (a skipped collective would hang the other worker).
    config = {"callback": callback, "fail_log": True, "log_every_n_batches": 1}
    results, _ = run_cluster(tmp_path, config, reference=False)
    _assert_ok(*results)
    chief, other = results
    assert len(chief["warnings"]) == 1 and "injected" in chief["warnings"][0]
    run = _assert_chief_only_io(results, tmp_path)
    aliases = [sorted(a.aliases) for a in run.artifacts(type="evaluation")]
    if callback == "stock":  # no per-N-batch logging in the documented example
        assert aliases == [["epoch-1", "latest"]]
    else:
        assert aliases == [["epoch-0", "latest"], ["latest", "step-3"], ["epoch-1", "latest"]]
        _assert_sample_order(run)
    assert chief["epochs"] == other["epochs"] == [0, 1]


@cluster_test
@pytest.mark.parametrize("strict", [False, True])
def test_a_failed_data_table_on_the_chief_turns_logging_off_everywhere(tmp_path, strict):
    # Not strict: the chief warns and logs nothing more; the other worker must skip the
    # sharded steps too (it would wait in them alone). Strict: both stop at train begin.
    config = {
        "callback": "classification",
        "fail_data": True,
        "strict": strict,
        "log_every_n_batches": 1,
    }
    results, _ = run_cluster(tmp_path, config, reference=False)
    chief, other = results
    if strict:
        assert chief["error"].startswith("OSError: injected"), chief["log"]
        assert other["error"].startswith("FastEvalWorkerError"), other["log"]
        assert "data table stage failed on another worker" in other["error"]
        assert chief["epochs"] == other["epochs"] == []
        return
    _assert_ok(*results)
    assert len(chief["warnings"]) == 1 and "data table" in chief["warnings"][0]
    assert chief["logged_versions"] == other["logged_versions"] == []
    assert chief["epochs"] == other["epochs"] == [0, 1]
    run = _assert_chief_only_io(results, tmp_path)
    assert run.artifacts(type="evaluation") == []


@cluster_test
def test_a_strict_failure_on_the_chief_stops_every_worker_at_the_same_log(tmp_path):
    config = {
        "callback": "classification",
        "fail_log": True,
        "strict": True,
        "async_logging": False,
        "log_every_n_batches": 1,
    }
    results, _ = run_cluster(tmp_path, config, reference=False)
    chief, other = results
    assert chief["rc"] == 3 and chief["error"].startswith("OSError: injected"), chief["log"]
    assert other["rc"] == 3 and other["error"].startswith("FastEvalWorkerError"), other["log"]
    assert "pred table stage failed on another worker" in other["error"]
    assert chief["epochs"] == other["epochs"] == [0]  # both left fit at step 1's log


@cluster_test
@pytest.mark.parametrize("when", ["construction", "set_model"])
def test_keras3_under_multi_worker_strategy_is_refused_before_the_first_epoch(tmp_path, when):
    # Two real workers with a Keras 3 model: each refuses, none waits on the other. Only
    # Keras 3 loaded: at construction. tf_keras loaded too: at set_model (Keras 3.15's own
    # fit fails before it calls set_model, so the test calls it as fit's CallbackList would).
    config = {"callback": "classification", "keras": "keras3"}
    if when == "set_model":
        config.update(load_tf_keras=True, set_model_first=True)
    results, _ = run_cluster(tmp_path, config, reference=False)
    for r in results:
        assert r["rc"] == 3, r["log"]
        assert r["error"].startswith("FastEvalInputError") and "keras#20585" in r["error"]
        assert r["epochs"] == []


@cluster_test
def test_a_hung_cluster_is_stopped_with_its_stacks(tmp_path):
    # Worker 1 leaves before fit: worker 0 waits in its first collective until the
    # harness dumps its stacks and kills it.
    with pytest.raises(pytest.fail.Exception, match=r"did not finish in 40 s") as failed:
        run_cluster(
            tmp_path, {"callback": "classification", "skip_fit": 1}, reference=False, timeout_s=40
        )
    stacks = str(failed.value)
    assert "most recent call first" in stacks and "multiworker_worker.py" in stacks, stacks
