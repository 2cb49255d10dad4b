"""pycocotools' COCOeval on packed batches (the oracle of the COCO metrics' tests), and
the generated sets they run on."""

from __future__ import annotations

import contextlib
import io

import numpy as np


def _xywh(box) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, np.float32))
    return [x1, y1, x2 - x1, y2 - y1]


def cocoeval(d: dict, num_classes: int):
    """``COCOeval`` (bbox) run on a packed batch ``d`` (``pred_*``, ``gt_*`` keys as
    :func:`fastevalcb.kernels.coco.coco_match` takes them, optional ``gt_crowd``).

    Image ids are 1..B in batch order, category ids 1..C, annotation ids from 1, areas the
    box areas. Returns the evaluated ``COCOeval``, or None when there is no prediction at
    all (``COCO.loadRes`` cannot load an empty list).
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    po, go = d["pred_offsets"], d["gt_offsets"]
    crowd = d.get("gt_crowd")
    images = [{"id": i + 1, "width": 640, "height": 640} for i in range(len(po) - 1)]
    anns = []
    for i in range(len(go) - 1):
        for g in range(go[i], go[i + 1]):
            box = _xywh(d["gt_xyxy"][g])
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(d["gt_class"][g]) + 1,
                    "bbox": box,
                    "area": box[2] * box[3],
                    "iscrowd": int(bool(crowd[g])) if crowd is not None else 0,
                }
            )
    gt = COCO()
    gt.dataset = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    results = []
    for i in range(len(po) - 1):
        for p in range(po[i], po[i + 1]):
            results.append(
                {
                    "image_id": i + 1,
                    "category_id": int(d["pred_class"][p]) + 1,
                    "bbox": _xywh(d["pred_xyxy"][p]),
                    "score": float(np.float32(d["pred_scores"][p])),
                }
            )
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


SIDES = np.array([0, 4, 16, 31, 32, 33, 60, 95, 96, 97, 120, 200], np.float64)


def generated(
    seed: int,
    images: int = 6,
    classes: int = 3,
    max_gt: int = 8,
    max_pred: int = 30,
    crowd: float = 0.0,
    outside: bool = True,
) -> dict:
    """A packed batch: ground truth of every COCO area range (sides straddle 32 and 96),
    predictions that are mostly jittered copies of a ground-truth box (so IoUs land on
    and around every threshold, ties included), some anywhere, some zero-area, some
    outside the 256x256 image, scores with ties."""
    rng = np.random.default_rng(seed)
    po, go, pb, gb, pc, gc, ps, cr = [0], [0], [], [], [], [], [], []
    for _ in range(images):
        first = len(gb)
        for _ in range(rng.integers(0, max_gt + 1)):
            x, y = rng.integers(-20 if outside else 0, 240, 2).astype(float)
            w, h = rng.choice(SIDES[1:], 2)
            gb.append([x, y, x + w, y + h])
            gc.append(rng.integers(0, classes))
            cr.append(rng.random() < crowd)
        for _ in range(rng.integers(0, max_pred + 1)):
            if len(gb) > first and rng.random() < 0.7:
                j = rng.integers(first, len(gb))
                box = np.array(gb[j]) + rng.choice([-8, -4, 0, 0, 0, 4, 8], 4)
                c = gc[j] if rng.random() < 0.85 else rng.integers(0, classes)
            else:
                x, y = rng.integers(-30 if outside else 0, 280, 2).astype(float)
                w, h = rng.choice(SIDES, 2)
                box, c = [x, y, x + w, y + h], rng.integers(0, classes)
            pb.append(box)
            pc.append(c)
            ps.append(rng.choice([0.5, 0.25, np.float32(rng.random())]))
        po.append(len(pb))
        go.append(len(gb))
    return {
        "pred_offsets": np.array(po),
        "pred_xyxy": np.array(pb, np.float32).reshape(-1, 4),
        "pred_scores": np.array(ps, np.float32),
        "pred_class": np.array(pc, np.int64),
        "gt_offsets": np.array(go),
        "gt_xyxy": np.array(gb, np.float32).reshape(-1, 4),
        "gt_class": np.array(gc, np.int64),
        "gt_crowd": np.array(cr, bool),
    }
