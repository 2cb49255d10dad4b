"""Build wandb.Image the stock way and the fast way, log both offline, compare the files.

The "stock way" is the hand-written loop people use with WandbEvalCallback: per-box
dicts with ``float()``/``int()`` and one ``wandb.Image(img, boxes=..., masks=...)`` per
image. Both sets are logged in the same real offline run and we compare what wandb wrote
to disk: box JSON files byte for byte, image and mask PNGs by decoded pixels (byte for
byte with ``compress_level=None``), and the JSON wandb serializes for each image.
"""

import glob
import io
import json
import os

import numpy as np
import pytest
import wandb
from PIL import Image

from fastevalcb.media import build_images, detection_images, encode_images, segmentation_images
from fastevalcb.media.boxes import box_payload


def stock_box_dicts(xyxy, scores, class_id, labels):
    """The stock pattern, written as users write it (numpy scalars -> float()/int())."""
    out = []
    for i in range(len(xyxy)):
        box = {
            "position": {
                "minX": float(xyxy[i][0]),
                "maxX": float(xyxy[i][2]),
                "minY": float(xyxy[i][1]),
                "maxY": float(xyxy[i][3]),
            },
            "class_id": int(class_id[i]),
        }
        if scores is None:
            box["box_caption"] = labels[int(class_id[i])]
        else:
            box["box_caption"] = f"{labels[int(class_id[i])]} {float(scores[i]):.2f}"
            box["scores"] = {"score": float(scores[i])}
        box["domain"] = "pixel"
        out.append(box)
    return out


def stock_detection_images(images, preds, gt, labels):
    out = []
    for i in range(len(images)):
        p, g = preds.image(i), gt.image(i)
        out.append(
            wandb.Image(
                images[i],
                boxes={
                    "predictions": {
                        "box_data": stock_box_dicts(p.xyxy, p.scores, p.class_id, labels),
                        "class_labels": labels,
                    },
                    "ground_truth": {
                        "box_data": stock_box_dicts(g.xyxy, None, g.class_id, labels),
                        "class_labels": labels,
                    },
                },
            )
        )
    return out


def stock_segmentation_images(images, pred, gt, labels):
    return [
        wandb.Image(
            images[i],
            masks={
                "predictions": {"mask_data": pred[i], "class_labels": labels},
                "ground_truth": {"mask_data": gt[i], "class_labels": labels},
            },
        )
        for i in range(len(images))
    ]


def media_files(run_dir, key):
    """{relative subdir: [file bytes]} of everything wandb wrote for a logged key."""
    files = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "media", "**", f"{key}_*"), recursive=True)):
        sub = os.path.relpath(os.path.dirname(path), run_dir)
        with open(path, "rb") as f:
            files.setdefault(sub, []).append(f.read())
    return files


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, ValueError):
        return {}


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def comparable_json(img, run, exact: bool):
    """``img.to_json(run)`` with the encoding-dependent fields dropped unless ``exact``."""
    j = json.loads(json.dumps(img.to_json(run)))

    def strip(d):
        d["path"] = d["path"].split("_", 2)[-1]  # drop the "<key>_<step>_" prefix
        if not exact:
            for k in ("sha256", "size", "path"):
                d.pop(k)

    strip(j)
    for m in j.get("masks", {}).values():
        strip(m)
    for b in j.get("boxes", {}).values():
        b["path"] = b["path"].split("_", 2)[-1]  # box files are byte-identical: keep sha
    return j


@pytest.mark.parametrize("compress_level", [1, None])
def test_detection_same_as_stock(wandb_offline, det_batch, compress_level):
    images, preds, gt, labels = det_batch
    run = wandb_offline
    stock = stock_detection_images(images, preds, gt, labels)
    fast = detection_images(images, preds, labels, ground_truth=gt, compress_level=compress_level)
    assert all(type(f) is wandb.Image for f in fast)
    run.log(
        {
            **{f"stock{i}": s for i, s in enumerate(stock)},
            **{f"fast{i}": f for i, f in enumerate(fast)},
        }
    )
    for i in range(len(images)):
        s_files, f_files = media_files(run.dir, f"stock{i}"), media_files(run.dir, f"fast{i}")
        assert sorted(s_files) == sorted(f_files)
        box_dir = "media/metadata/boxes2D"
        assert sorted(s_files[box_dir]) == sorted(f_files[box_dir])
        s_png, f_png = s_files["media/images"], f_files["media/images"]
        np.testing.assert_array_equal(pixels(s_png[0]), pixels(f_png[0]))
        assert (s_png == f_png) == (compress_level is None)
        exact = compress_level is None
        assert comparable_json(fast[i], run, exact) == comparable_json(stock[i], run, exact)
    # the JSON on disk is what the stock per-box dicts say, incl. +inf score, empty images
    boxes = json.loads(f_files["media/metadata/boxes2D"][0])
    assert set(boxes) == {"box_data", "class_labels"}


def test_segmentation_same_as_stock(wandb_offline, det_batch):
    images, _, _, labels = det_batch
    rng = np.random.default_rng(3)
    pred = rng.integers(0, 5, (4, 48, 64)).astype(np.uint8)
    gt = np.repeat(np.repeat(rng.integers(0, 5, (4, 6, 8)), 8, 1), 8, 2).astype(np.uint8)
    run = wandb_offline
    stock = stock_segmentation_images(images, pred, gt, labels)
    fast = segmentation_images(images, pred, labels, ground_truth=gt)
    run.log(
        {
            **{f"stock{i}": s for i, s in enumerate(stock)},
            **{f"fast{i}": f for i, f in enumerate(fast)},
        }
    )
    for i in range(len(images)):
        s_files, f_files = media_files(run.dir, f"stock{i}"), media_files(run.dir, f"fast{i}")
        assert sorted(s_files) == sorted(f_files) == ["media/images", "media/images/mask"]
        np.testing.assert_array_equal(
            pixels(s_files["media/images"][0]), pixels(f_files["media/images"][0])
        )
        s_masks = sorted(pixels(m).tobytes() for m in s_files["media/images/mask"])
        f_masks = sorted(pixels(m).tobytes() for m in f_files["media/images/mask"])
        assert s_masks == f_masks == sorted([pred[i].tobytes(), gt[i].tobytes()])
        assert comparable_json(fast[i], run, False) == comparable_json(stock[i], run, False)


def test_table_json_same_as_stock(wandb_offline, det_batch):
    """In a wandb.Table (the callback's target) the serialized boxes are identical too."""
    images, preds, gt, labels = det_batch
    encoded = encode_images(images)  # the encode-once, reuse-every-epoch path
    fast = detection_images(encoded, preds, labels, ground_truth=gt)
    stock = stock_detection_images(images, preds, gt, labels)
    table = wandb.Table(columns=["stock", "fast"])
    for s, f in zip(stock, fast):
        table.add_data(s, f)
    run = wandb_offline
    run.log({"table": table})
    run.finish()
    tables = [
        d
        for d in map(
            read_json,
            glob.glob(os.path.join(os.environ["WANDB_DATA_DIR"], "artifacts", "staging", "*")),
        )
        if d.get("_type") == "table"
    ]
    assert tables, "wandb wrote no table JSON to the artifact staging folder"
    data = tables[0]["data"]
    assert len(data) == len(images)
    for s, f in data:
        assert s["boxes"] == f["boxes"] and s["boxes"]["predictions"] is not None
        assert (s["width"], s["height"], s["format"]) == (f["width"], f["height"], f["format"])
        assert s["classes"] == f["classes"]


def test_overlay_and_captions(wandb_offline, det_batch):
    images, _, _, labels = det_batch
    pred = np.zeros((4, 48, 64), np.uint8)
    pred[:, :10] = 3
    out = segmentation_images(images, pred, labels, overlay_alpha=1.0, captions=list("abcd"))
    img = np.asarray(out[0].image)
    from fastevalcb.media import default_palette

    assert (img[:10] == default_palette(5)[3]).all() and (img[10:] == default_palette(5)[0]).all()
    assert out[0]._caption == "a"
    wandb_offline.log({"overlay": out})


def test_box_payload_equals_stock_dicts(det_batch):
    _, preds, gt, labels = det_batch
    for i in range(preds.num_images):
        p = preds.image(i)
        assert box_payload(p, labels) == {
            "box_data": stock_box_dicts(p.xyxy, p.scores, p.class_id, labels),
            "class_labels": labels,
        }
    no_domain = box_payload(gt.image(3), labels, domain=None)["box_data"]
    assert all("domain" not in b and "scores" not in b for b in no_domain)


def test_unknown_class_ids_raise(det_batch):
    images, preds, _, labels = det_batch
    short = {0: "a", 1: "b"}
    bad = int(preds.class_id[preds.class_id > 1][0])
    with pytest.raises(ValueError, match=rf"unknown class id {bad}.*\[0, 2\)"):
        detection_images(images, preds, short)
    with pytest.raises(ValueError, match=r"masks\['predictions'\] contains unknown class id 7"):
        segmentation_images(images, np.full((4, 48, 64), 7, np.uint8), labels)
    with pytest.raises(ValueError, match=r"boxes\['predictions'\] must have 3 images, got 4"):
        build_images(images[:3], boxes={"predictions": preds}, class_labels=labels)
