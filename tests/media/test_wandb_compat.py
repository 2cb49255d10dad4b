"""Fail loudly when a wandb release changes the internals fastevalcb.media._wandb mirrors."""

import numpy as np
import wandb

from fastevalcb.media import build_images
from fastevalcb.types import PackedDetections


def test_objects_have_exactly_the_stock_attributes():
    img = np.zeros((6, 8, 3), np.uint8)
    labels = {0: "a", 1: "b"}
    det = PackedDetections([0, 1], [[1, 1, 4, 4]], [1], [0.5])
    mask = np.zeros((1, 6, 8), np.uint8)
    (fast,) = build_images(img[None], boxes={"predictions": det}, masks={"m": mask},
                           class_labels=labels)
    stock = wandb.Image(img, boxes={"predictions": {"box_data": [], "class_labels": labels}},
                        masks={"m": {"mask_data": mask[0], "class_labels": labels}})
    pairs = [(fast, stock), (fast._boxes["predictions"], stock._boxes["predictions"]),
             (fast._masks["m"], stock._masks["m"]), (fast._classes, stock._classes)]
    for f, s in pairs:
        assert type(f) is type(s)
        assert set(vars(f)) == set(vars(s)), type(s).__name__
        for k in vars(s):
            assert type(getattr(f, k)) is type(getattr(s, k)), (type(s).__name__, k)
    assert fast._classes._class_set == stock._classes._class_set
    assert (fast._width, fast._height, fast.format) == (stock._width, stock._height, stock.format)
    assert fast._boxes["predictions"]._extension == stock._boxes["predictions"]._extension
    assert fast._masks["m"]._extension == stock._masks["m"]._extension
