"""fastevalcb.kernels.confusion against scikit-learn (the oracle) and its numpy twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm

from fastevalcb.kernels import confusion
from tests.helpers import reference
from tests.helpers.coco_oracle import generated


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda c: st.tuples(
            st.just(c),
            st.lists(
                st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)), min_size=1, max_size=60
            ),
        )
    )
)
@pytest.mark.filterwarnings("ignore:A single label")
def test_confusion_matrix_equals_sklearn(case):
    c, pairs = case
    t = np.array([a for a, _ in pairs], np.int64)
    p = np.array([b for _, b in pairs], np.int64)
    got = confusion.confusion_matrix(t, p, c)
    np.testing.assert_array_equal(got, skm.confusion_matrix(t, p, labels=range(c)))
    np.testing.assert_array_equal(got, reference.confusion_matrix(t, p, c))


def test_ignored_pixels_are_skipped_and_uint8_masks_work():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 4, (3, 8, 8)).astype(np.uint8)
    t[0, :2] = 255
    p = rng.integers(0, 4, (3, 8, 8)).astype(np.uint8)
    got = confusion.confusion_matrix(t, p, 4, ignore_index=255)
    keep = t.reshape(-1) != 255
    np.testing.assert_array_equal(
        got, skm.confusion_matrix(t.reshape(-1)[keep], p.reshape(-1)[keep], labels=range(4))
    )


def test_ids_outside_the_classes_are_named():
    with pytest.raises(ValueError, match="y_pred contains unknown class id 5"):
        confusion.confusion_matrix(np.array([0, 1]), np.array([1, 5]), 3)


def test_per_class_scores_equal_sklearn():
    rng = np.random.default_rng(1)
    t, p = rng.integers(0, 5, 300), rng.integers(0, 4, 300)  # class 4 never predicted
    s = confusion.per_class_scores(confusion.confusion_matrix(t, p, 6))  # class 5: nowhere
    precision, recall, f1, support = skm.precision_recall_fscore_support(
        t, p, labels=range(6), zero_division=np.nan
    )
    np.testing.assert_allclose(s["precision"], precision, equal_nan=True)
    np.testing.assert_allclose(s["recall"], recall, equal_nan=True)
    np.testing.assert_allclose(s["f1"][:5], f1[:5])
    np.testing.assert_array_equal(s["support"], support)
    np.testing.assert_allclose(s["iou"][:5], skm.jaccard_score(t, p, labels=range(5), average=None))
    assert np.isnan(s["iou"][5]) and np.isnan(s["f1"][5])


@pytest.mark.parametrize("seed", range(12))
def test_detection_confusion_matches_the_twin_and_its_pairs_equal_sklearn(seed):
    d = generated(seed, max_pred=25)
    del d["gt_crowd"]
    args = {
        "num_classes": 3,
        "iou_threshold": (0.5, 0.3)[seed % 2],
        "score_threshold": (0.25, 0.0)[seed % 2],
    }
    got = confusion.detection_confusion(**d, **args)
    np.testing.assert_array_equal(got, reference.detection_confusion(**d, **args))
    # every ground-truth box is in exactly one row cell, every kept prediction in one column
    kept = d["pred_scores"] >= np.float32(args["score_threshold"])
    assert got[:3].sum() == len(d["gt_class"])
    assert got[:, :3].sum() == kept.sum()
    # the matrix is sklearn's on its own (true, predicted) pairs, background = 3
    pairs = np.repeat(np.argwhere(got >= 0), got.reshape(-1), axis=0)
    np.testing.assert_array_equal(
        got, skm.confusion_matrix(pairs[:, 0], pairs[:, 1], labels=range(4))
    )


def test_detection_confusion_by_hand():
    pb = np.array([[0, 0, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60], [80, 80, 90, 90]], np.float32)
    gb = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 30]], np.float32)
    got = confusion.detection_confusion(
        [0, 4], pb, [0.9, 0.8, 0.7, 0.1], [0, 0, 2, 1], [0, 3], gb, [0, 1, 1], 3
    )
    want = np.zeros((4, 4), np.int64)
    want[0, 0] = 1  # the best box
    want[3, 0] = 1  # its duplicate: background predicted as class 0
    want[1, 2] = 1  # a "1" predicted as "2"
    want[1, 3] = 1  # a "1" missed; the 0.1 prediction is under the threshold
    np.testing.assert_array_equal(got, want)


def test_empty_inputs_give_zeros():
    empty = np.zeros(0, np.int64)
    assert not confusion.confusion_matrix(empty, empty, 3).any()
    got = confusion.detection_confusion(
        [0, 0], np.zeros((0, 4)), empty, empty, [0, 0], np.zeros((0, 4)), empty, 2
    )
    assert got.shape == (3, 3) and not got.any()


def test_warmup_covers_confusion():
    from fastevalcb import kernels

    assert set(kernels.warmup(["confusion"])) == {"confusion"}


def test_out_accumulates_batches_in_place():
    rng = np.random.default_rng(3)
    t, p = rng.integers(0, 4, 100), rng.integers(0, 4, 100)
    out = confusion.confusion_matrix(t[:40], p[:40], 4)
    assert confusion.confusion_matrix(t[40:], p[40:], 4, out=out) is out
    np.testing.assert_array_equal(out, confusion.confusion_matrix(t, p, 4))
    d = generated(9, images=6)
    del d["gt_crowd"]
    whole = confusion.detection_confusion(**d, num_classes=3)
    parts = np.zeros((4, 4), np.int64)
    for lo, hi in ((0, 2), (2, 6)):
        p0, p1, g0, g1 = (
            d["pred_offsets"][lo],
            d["pred_offsets"][hi],
            d["gt_offsets"][lo],
            d["gt_offsets"][hi],
        )
        confusion.detection_confusion(
            d["pred_offsets"][lo : hi + 1] - p0,
            d["pred_xyxy"][p0:p1],
            d["pred_scores"][p0:p1],
            d["pred_class"][p0:p1],
            d["gt_offsets"][lo : hi + 1] - g0,
            d["gt_xyxy"][g0:g1],
            d["gt_class"][g0:g1],
            3,
            out=parts,
        )
    np.testing.assert_array_equal(parts, whole)
    with pytest.raises(ValueError, match=r"out must be a C-contiguous \(4, 4\) int64 array"):
        confusion.confusion_matrix(t, p, 4, out=np.zeros((4, 4), np.int32))
