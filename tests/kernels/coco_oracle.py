"""pycocotools' COCOeval on packed batches: the oracle of the COCO kernels' tests."""

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
            anns.append({"id": len(anns) + 1, "image_id": i + 1,
                         "category_id": int(d["gt_class"][g]) + 1, "bbox": box,
                         "area": box[2] * box[3],
                         "iscrowd": int(bool(crowd[g])) if crowd is not None else 0})
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns,
                  "categories": [{"id": c + 1, "name": str(c)} for c in range(num_classes)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    results = []
    for i in range(len(po) - 1):
        for p in range(po[i], po[i + 1]):
            results.append({"image_id": i + 1, "category_id": int(d["pred_class"][p]) + 1,
                            "bbox": _xywh(d["pred_xyxy"][p]),
                            "score": float(np.float32(d["pred_scores"][p]))})
    if not results:
        return None
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev
