"""SegmentationEvalCallback end to end: metrics against an independent numpy computation."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image as PILImage

from fastevalcb import FastEvalInputError, SegmentationEvalCallback
from tests.helpers.tasks import EpochRecorder, pred_versions

NAMES = ["background", "rectangle", "ellipse", "triangle"]


def iou_by_hand(pred, target, num_classes, ignore=None):
    """Per-image per-class IoU with boolean masks (NaN where a class is in neither)."""
    valid = np.ones_like(target, bool) if ignore is None else target != ignore
    out = np.full((len(pred), num_classes), np.nan)
    for i in range(len(pred)):
        for c in range(num_classes):
            p, t = (pred[i] == c) & valid[i], (target[i] == c) & valid[i]
            union = (p | t).sum()
            if union:
                out[i, c] = (p & t).sum() / union
    return out


@pytest.mark.slow
@pytest.mark.fast_path
def test_tables_metrics_and_mask_references(offline_run, shapes, segmenter):
    run, read = offline_run
    x, masks = shapes.images[:12], shapes.masks[:12]
    cb = SegmentationEvalCallback((x, masks), NAMES, batch_size=5, verbose=0)
    segmenter.fit(shapes.images, shapes.masks, epochs=2, batch_size=16, callbacks=[cb], verbose=0)
    pred = segmenter.predict(x, verbose=0).argmax(-1)
    log = read()

    data = log.artifact("val")
    data_table = log.load_table(data, "val_data")
    assert data_table.columns == ["id", "image", "classes"]
    assert data_table.column("classes")[0] == ["background", NAMES[shapes.labels[0] + 1]]

    last = pred_versions(log, run.id)[-1]
    table = log.load_table(last, "eval_data")
    assert table.columns == [
        "epoch",
        "step",
        "id",
        "image",
        "pixel_accuracy",
        "mean_iou",
        *(f"iou/{n}" for n in NAMES),
        "finite",
    ]
    assert set(table.column("finite")) == {True}
    expected_iou = iou_by_hand(pred, masks, 4)
    got_iou = np.array([table.column(f"iou/{n}") for n in NAMES], float).T
    np.testing.assert_allclose(got_iou, expected_iou, rtol=1e-6)
    np.testing.assert_allclose(table.column("mean_iou"), np.nanmean(expected_iou, 1), rtol=1e-6)
    np.testing.assert_allclose(
        table.column("pixel_accuracy"), (pred == masks).mean(axis=(1, 2)), rtol=1e-6
    )

    # The logged prediction mask holds exactly the model's argmax.
    cell = table.column("image")[3]
    pred_entry = last.entries[cell["masks"]["predictions"]["path"]]
    assert not pred_entry.is_reference
    np.testing.assert_array_equal(np.asarray(PILImage.open(pred_entry.local_path)), pred[3])
    # Image and ground-truth mask: references into the data artifact.
    for path in (cell["path"], cell["masks"]["ground_truth"]["path"]):
        assert last.entries[path].is_reference
        assert last.entries[path].referenced_client_id == data.client_id

    # Summary mIoU from pixel counts summed over the 12 images.
    inter = np.array([((pred == c) & (masks == c)).sum() for c in range(4)])
    union = np.array([((pred == c) | (masks == c)).sum() for c in range(4)])
    row = [r for r in log.history() if "eval/mIoU" in r][-1]
    assert row["eval/mIoU"] == pytest.approx(np.mean(inter[union > 0] / union[union > 0]))
    assert row["eval/pixel_accuracy"] == pytest.approx((pred == masks).mean())


@pytest.mark.slow
def test_ignore_index_pixels_count_nowhere(offline_run, shapes, segmenter):
    run, read = offline_run
    x, masks = shapes.images[:8], shapes.masks[:8].copy()
    masks[:, :4] = 255  # top rows unlabelled
    ds = tf.data.Dataset.from_tensor_slices((x, masks[..., None])).batch(3)
    cb = SegmentationEvalCallback(ds, NAMES, ignore_index=255, verbose=0)
    segmenter.fit(shapes.images, shapes.masks, epochs=1, callbacks=[cb], verbose=0)
    pred = segmenter.predict(x, verbose=0).argmax(-1)
    table = read().load_table(pred_versions(read(), run.id)[-1], "eval_data")
    expected = iou_by_hand(pred, masks, 4, ignore=255)
    got = np.array([table.column(f"iou/{n}") for n in NAMES], float).T
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    valid = masks != 255
    np.testing.assert_allclose(
        table.column("pixel_accuracy"),
        ((pred == masks) & valid).sum((1, 2)) / valid.sum((1, 2)),
        rtol=1e-6,
    )


@pytest.mark.slow
@pytest.mark.parametrize("grey", [False, True])
def test_overlay_alpha_renders_a_new_image(offline_run, shapes, grey):
    run, read = offline_run
    images = shapes.images[:, :, :, :1] if grey else shapes.images
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(images.shape[1:]), keras.layers.Conv2D(4, 1)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    cb = SegmentationEvalCallback(
        (images[:4], shapes.masks[:4]), NAMES, overlay_alpha=0.5, verbose=0
    )
    model.fit(images, shapes.masks, epochs=1, callbacks=[cb], verbose=0)
    log = read()
    last = pred_versions(log, run.id)[-1]
    cell = log.load_table(last, "eval_data").column("image")[0]
    entry = last.entries[cell["path"]]
    assert not entry.is_reference
    shown = np.asarray(PILImage.open(entry.local_path))
    assert shown.shape == (16, 16, 3) and not np.array_equal(shown, shapes.images[0])


@pytest.mark.slow
@pytest.mark.parametrize(
    "activation, output", [("sigmoid", "auto"), (None, "auto"), ("sigmoid", "probabilities")]
)
def test_one_channel_binary_models_are_thresholded_by_their_range(
    offline_run, shapes, activation, output
):
    run, read = offline_run
    masks = (shapes.masks > 0).astype(np.uint8)
    keras.utils.set_random_seed(1)
    model = keras.Sequential(
        [
            keras.Input((16, 16, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(1, 3, padding="same", activation=activation),
        ]
    )
    model.compile("sgd", "mse")
    cb = SegmentationEvalCallback(
        (shapes.images[:8], masks[:8]), ["bg", "fg"], output=output, verbose=0
    )
    model.fit(shapes.images, masks, epochs=1, callbacks=[cb], verbose=0)
    scores = model.predict(shapes.images[:8], verbose=0)[..., 0]
    pred = (scores > (0.5 if activation == "sigmoid" else 0.0)).astype(np.uint8)
    table = read().load_table(pred_versions(read(), run.id)[-1], "eval_data")
    np.testing.assert_allclose(
        table.column("pixel_accuracy"), (pred == masks[:8]).mean(axis=(1, 2)), rtol=1e-6
    )


@pytest.mark.parametrize(
    "masks, match",
    [
        (np.zeros((48, 8, 8), np.uint8), r"matching the images' size \(16, 16\); got \(8, 8\)"),
        (
            np.full((48, 16, 16), 4, np.uint8),
            r"mask pixel of sample 0 is 4, outside class_names \(4 classes",
        ),
        (np.full((48, 16, 16), 0.5, np.float32), "integer class ids"),
    ],
)
def test_bad_masks_fail_at_construction(offline_run, shapes, masks, match):
    with pytest.raises(FastEvalInputError, match=match):
        SegmentationEvalCallback((shapes.images, masks), NAMES)


def test_channel_count_must_match_class_names(offline_run, shapes, segmenter):
    cb = SegmentationEvalCallback((shapes.images, shapes.masks), NAMES + ["extra"])
    epochs = EpochRecorder()
    with pytest.raises(FastEvalInputError, match="outputs 4 channels, but there are 5"):
        segmenter.fit(shapes.images, shapes.masks, epochs=1, callbacks=[cb, epochs], verbose=0)
    assert epochs.epochs == []


def test_ignore_index_must_not_be_a_class_id(offline_run, shapes):
    with pytest.raises(ValueError, match=r"ignore_index must be an int in \[4, 255\]"):
        SegmentationEvalCallback((shapes.images, shapes.masks), NAMES, ignore_index=2)


@pytest.mark.slow
def test_nan_scores_are_flagged_warned_once_and_their_metrics_are_nan(
    offline_run, shapes, segmenter
):
    import warnings

    from tests.helpers.tasks import Diverge, fast_eval_warnings

    run, read = offline_run
    cb = SegmentationEvalCallback((shapes.images[:6], shapes.masks[:6]), NAMES, verbose=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        segmenter.fit(
            shapes.images,
            shapes.masks,
            epochs=3,
            batch_size=16,
            callbacks=[Diverge(at=1), cb],
            verbose=0,
        )
    log = read()
    tables = [log.load_table(v, "eval_data") for v in pred_versions(log, run.id)]
    assert [t.column("finite") for t in tables] == [[True] * 6, [False] * 6, [False] * 6]
    assert not any(np.isnan(tables[0].column("pixel_accuracy")))
    for name in ("pixel_accuracy", "mean_iou", f"iou/{NAMES[0]}"):
        assert all(np.isnan(np.array(tables[1].column(name), float))), name  # nulls
    rows = [r for r in log.history() if "eval/mIoU" in r]
    assert [np.isnan(r["eval/pixel_accuracy"]) for r in rows] == [False, True, True]
    assert np.isnan(rows[1]["eval/mIoU"])
    nan = [m for m in fast_eval_warnings(caught) if "non-finite" in m]
    assert len(nan) == 1, nan
    assert (
        "6 of 6 segmentation samples had non-finite predictions (NaN/inf) at epoch 1 "
        "(step 6); first sample id 0." in nan[0]
    )
