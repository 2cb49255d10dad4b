"""What ``fastevalcb report`` writes, and what it says about bad input (never a traceback)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastevalcb.__main__ import main
from fastevalcb.report import ReportError, build_report
from fastevalcb.report.build import rle_encode
from tests.helpers.report import make_run, open_report

ROOT = Path(__file__).resolve().parents[2]


def _shard(files: Path, name: str):
    text = (files / f"{name}.js").read_text()
    match = re.fullmatch(r'FEV\.register\("([^"]+)",(.*)\);\n', text, re.S)
    assert match and match.group(1) == name
    return json.loads(match.group(2))


def _rle_decode(rle, shape):
    return np.repeat(np.array(rle[0::2]), np.array(rle[1::2])).reshape(shape)


@pytest.mark.parametrize(
    "mask",
    [
        np.zeros((3, 4), np.uint8),
        np.arange(12, dtype=np.uint8).reshape(3, 4),
        np.random.default_rng(0).integers(0, 3, (17, 9)).astype(np.uint8),
        np.zeros((0, 5), np.uint8),
    ],
)
def test_rle_encode_round_trips(mask):
    rle = rle_encode(mask)
    assert sum(rle[1::2]) == mask.size
    if mask.size:
        assert np.array_equal(_rle_decode(rle, mask.shape), mask)
        assert all(a != b for a, b in zip(rle[0:-2:2], rle[2::2]))  # runs are maximal


@pytest.mark.slow
def test_shards_hold_what_the_run_recorded(task_runs, tmp_path):
    run = task_runs["detection"]
    html = build_report(run.run_dir, tmp_path / "r.html")
    files = tmp_path / "r_files"
    meta = _shard(files, "meta")
    assert meta["run"]["id"] == run.run_id and meta["run"]["complete"]
    pred = meta["tables"][0]
    assert pred["artifact"] == f"run_{run.run_id}_pred" and pred["table"] == "eval_data"
    assert [v["epoch"] for v in pred["versions"]] == [0, 1]
    assert meta["tables"][1]["artifact"] == "val"
    assert pred["layers"] == {"boxes": ["ground_truth", "predictions"], "masks": []}
    assert pred["classes"]["boxes:predictions"] == {
        "0": "rectangle",
        "1": "ellipse",
        "2": "triangle",
    }
    images = _shard(files, "images")
    for art, version in zip(run.artifacts(type="evaluation"), pred["versions"]):
        table = run.load_table(art, "eval_data")
        shard = _shard(files, version["shard"])
        assert shard["n"] == len(table.rows) == version["rows"]
        for name in ("id", "tp", "fp", "fn", "num_predictions"):
            assert shard["cells"][name] == table.column(name)
        col = shard["images"]["image"]
        for cell, image_id, boxes in zip(
            table.column("image"), col["image"], col["boxes"]["predictions"]
        ):
            _, entry = run.resolve(art, cell["path"])
            assert (html.parent / images[image_id]).resolve() == Path(entry.local_path).resolve()
            want = [
                [b["position"][k] for k in ("minX", "minY", "maxX", "maxY")]
                + [b["class_id"], b["scores"]["score"]]
                for b in cell["boxes"]["predictions"]
            ]
            assert boxes == want
    history = [r for r in run.history() if "eval/mAP50" in r]
    assert meta["metrics"]["series"]["eval/mAP50"] == [
        [r["eval/global_step"], r["eval/mAP50"]] for r in history
    ]


@pytest.mark.slow
def test_masks_are_decoded_and_shared_across_versions(task_runs, tmp_path):
    from PIL import Image

    run = task_runs["segmentation"]
    build_report(run.run_dir, tmp_path / "r.html")
    files = tmp_path / "r_files"
    meta = _shard(files, "meta")
    shards = [_shard(files, v["shard"]) for v in meta["tables"][0]["versions"]]
    gt = [s["images"]["image"]["masks"]["ground_truth"] for s in shards]
    assert gt[0] == gt[1]  # the same ground-truth files: the same mask ids
    art = run.artifacts(type="evaluation")[-1]
    cell = run.load_table(art, "eval_data").column("image")[3]
    _, entry = run.resolve(art, cell["masks"]["predictions"]["path"])
    mask_id = shards[-1]["images"]["image"]["masks"]["predictions"][3]
    stored = _shard(files, f"masks{mask_id // meta['mask_chunk']}")[mask_id % meta["mask_chunk"]]
    want = np.asarray(Image.open(entry.local_path))
    assert np.array_equal(_rle_decode(stored["rle"], (stored["h"], stored["w"])), want)


@pytest.mark.slow
def test_cli_writes_the_report(task_runs, tmp_path, capsys):
    run = task_runs["classification"]
    assert main(["report", str(run.run_dir), "-o", str(tmp_path / "x" / "page.html")]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (tmp_path / "x" / "page.html").is_file() and (tmp_path / "x" / "page_files").is_dir()
    # A wandb/ folder (or its parent) means its latest run.
    assert main(["report", str(run.run_dir.parent), "-o", str(tmp_path / "y.html")]) == 0
    assert (
        main(["report", str(run.run_dir.parent.parent), "-o", str(tmp_path / "z.html"), "--embed"])
        == 0
    )
    assert run.run_id in (tmp_path / "z.html").read_text()


@pytest.mark.slow
def test_python_m_fastevalcb_report(task_runs, tmp_path):
    run = task_runs["classification"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"}
    ok = subprocess.run(
        [sys.executable, "-m", "fastevalcb", "report", str(run.run_dir)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "report.html").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    bad = subprocess.run(
        [sys.executable, "-m", "fastevalcb", "report"],
        cwd=empty,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert bad.returncode == 2
    assert "no offline-run-* directories" in bad.stderr and "Traceback" not in bad.stderr


def _cli_error(capsys, *args) -> str:
    assert main(["report", *map(str, args)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fastevalcb report: ") and "Traceback" not in err
    return err


def test_no_offline_run_is_a_clear_message(tmp_path, capsys):
    err = _cli_error(capsys, tmp_path, "-o", tmp_path / "r.html")
    assert "no offline-run-* directories" in err
    err = _cli_error(capsys, tmp_path / "nope")
    assert "does not exist" in err and "offline run directory" in err
    (tmp_path / "wandb" / "offline-run-20260101_000000-abc").mkdir(parents=True)
    assert "no run-*.wandb transaction log" in _cli_error(capsys, tmp_path)
    with pytest.raises(ReportError):
        build_report(tmp_path / "nope", tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


@pytest.mark.slow
def test_damaged_transaction_log_is_a_clear_message(task_runs, tmp_path, capsys):
    src = task_runs["classification"].run_dir
    run_dir = tmp_path / src.name
    shutil.copytree(src, run_dir)
    log = next(run_dir.glob("run-*.wandb"))
    data = bytearray(log.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # zeros in the middle
    log.write_bytes(bytes(data))
    err = _cli_error(capsys, run_dir, "-o", tmp_path / "r.html")
    assert "cannot read an offline run" in err and "checksum mismatch" in err
    log.write_bytes(b"not a log at all")
    assert "is not a W&B transaction log" in _cli_error(capsys, run_dir)


@pytest.mark.slow
def test_a_run_cut_short_still_gives_a_page_that_says_so(task_runs, tmp_path):
    src = task_runs["classification"].run_dir
    run_dir = tmp_path / src.name
    shutil.copytree(src, run_dir)
    log = next(run_dir.glob("run-*.wandb"))
    data = log.read_bytes()
    log.write_bytes(data[: len(data) * 2 // 3])  # a torn tail, as if killed
    build_report(run_dir, tmp_path / "r.html")
    meta = _shard(tmp_path / "r_files", "meta")
    assert not meta["run"]["complete"]
    assert any("no exit record" in p for p in meta["problems"])


@pytest.mark.slow
def test_deleted_media_and_tables_give_a_page_that_says_what_is_missing(wandb_env, page):
    run = make_run("classification", wandb_env / "own")
    first, latest = run.artifacts(type="evaluation")  # (the metric tables: run_table)
    table = run.load_table(latest, "eval_data")
    gone = set()
    for cell in table.column("image")[:3]:  # the staged files of three images
        _, entry = run.resolve(latest, cell["path"])
        Path(entry.local_path).unlink()
        gone.add(cell["path"])
    Path(first.entries["eval_data.table.json"].local_path).unlink()  # and version 0's table
    html = build_report(run.run_dir, wandb_env / "r.html")
    meta = _shard(wandb_env / "r_files", "meta")
    assert {m.split(": ")[0].rsplit("/", 2)[-1] for m in meta["missing_media"]} >= {
        p.rsplit("/", 1)[-1] for p in gone
    }
    assert meta["tables"][0]["versions"][0]["error"]

    open_report(page, html)
    problems = page.text_content("#problems")
    assert "media file(s) are missing" in problems
    assert f"table {first.qualified_name}/eval_data.table.json cannot be read" in problems
    assert page.locator("td .missing").count() == 3
    assert page.locator(".img img").count() == len(table.rows) - 3
    assert page.eval_on_selector("#version option[value='0']", "o => o.disabled")
    assert page.input_value("#version") == "1"


def test_every_page_asset_is_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = set(config["tool"]["setuptools"]["package-data"]["fastevalcb.report"])
    assets = {
        p.name
        for p in (ROOT / "fastevalcb" / "report").iterdir()
        if p.suffix != ".py" and p.is_file()
    }
    assert assets == declared
    assert config["project"]["scripts"]["fastevalcb"] == "fastevalcb.__main__:main"
