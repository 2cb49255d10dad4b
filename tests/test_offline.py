"""fastevalcb.offline reads real offline runs: framing, history, artifacts, errors."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import wandb
from wandb.proto import wandb_internal_pb2

from fastevalcb.offline import OfflineRun, OfflineRunError, find_runs, read_records


def test_records_spanning_many_blocks_round_trip(offline_run):
    run, read = offline_run
    rng = np.random.default_rng(0)
    payloads = ["x" * int(n) for n in rng.integers(1, 70_000, 30)]  # some > one 32 KiB block
    for i, text in enumerate(payloads):
        run.log({"i": i, "text": text})
    rec = read()
    assert rec.wandb_file.stat().st_size > 5 * 32 * 1024
    history = [row for row in rec.history() if "text" in row]
    assert [row["i"] for row in history] == list(range(30))
    assert [row["text"] for row in history] == payloads
    assert rec.run_id == run.id and rec.complete


def test_artifact_lookup_by_alias_version_and_errors(offline_run):
    run, read = offline_run
    for epoch in range(3):
        art = wandb.Artifact("thing", type="evaluation", metadata={"epoch": epoch})
        art.add(wandb.Table(columns=["e"], data=[[epoch]]), "t")
        run.log_artifact(art, aliases=["latest", f"epoch-{epoch}"])
    rec = read()
    assert [a.qualified_name for a in rec.artifacts("thing")] == [
        "thing:v0",
        "thing:v1",
        "thing:v2",
    ]
    assert rec.artifact("thing").version == 2
    assert rec.artifact("thing", "epoch-1").metadata == {"epoch": 1}
    assert sorted(rec.artifact("thing", "v0").aliases) == ["epoch-0", "latest"]
    assert rec.load_table(rec.artifact("thing", 0), "t").rows == [[0]]
    with pytest.raises(OfflineRunError, match=r"no artifact named 'nope'.*\['thing'\]"):
        rec.artifact("nope")
    with pytest.raises(OfflineRunError, match="has no version 'epoch-9'"):
        rec.artifact("thing", "epoch-9")
    with pytest.raises(
        OfflineRunError, match=r"has no other\.table\.json; tables: \['t\.table\.json'\]"
    ):
        rec.load_table(rec.artifact("thing"), "other")


def test_corrupt_and_torn_logs(tmp_path):
    not_a_log = tmp_path / "run-x.wandb"
    not_a_log.write_bytes(b"hello world")
    with pytest.raises(OfflineRunError, match="not a W&B transaction log"):
        list(read_records(not_a_log))

    record = wandb_internal_pb2.Record()
    record.history.item.add(key="k", value_json="1")
    payload = record.SerializeToString()
    good = struct.pack("<IHB", zlib.crc32(payload, zlib.crc32(b"\x01")), len(payload), 1) + payload
    log = tmp_path / "run-y.wandb"
    log.write_bytes(b":W&B\xe1\xbe\x00" + good + good[:9])  # second chunk torn
    (only,) = read_records(log)
    assert only.history.item[0].key == "k"
    # Opened but not written yet (wandb 0.20 can leave it so right after finish): no
    # records, not complete, so wait_complete() keeps waiting instead of failing.
    opened = tmp_path / "run-z.wandb"
    opened.write_bytes(b"")
    assert list(read_records(opened)) == [] and not OfflineRun(opened).complete
    opened.write_bytes(b":W&B\xe1\xbe\x00"[:3])
    assert list(read_records(opened)) == []
    bad = bytearray(good)
    bad[0] ^= 0xFF
    log.write_bytes(b":W&B\xe1\xbe\x00" + bytes(bad))
    with pytest.raises(OfflineRunError, match="checksum mismatch"):
        list(read_records(log))


def test_missing_runs_are_clear_errors(tmp_path):
    with pytest.raises(OfflineRunError, match="no offline-run-"):
        find_runs(tmp_path)
    with pytest.raises(OfflineRunError, match="no run-\\*.wandb"):
        OfflineRun(tmp_path)
