"""fastevalcb.kernels.coco against pycocotools' COCOeval (the oracle) and its numpy twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastevalcb import kernels
from fastevalcb.kernels import coco
from tests.helpers import reference
from tests.helpers.coco_oracle import cocoeval, generated

TOL = 1e-6


def evaluate(d: dict, num_classes: int) -> coco.CocoResult:
    return coco.coco_accumulate(coco.coco_match(**d, num_classes=num_classes))


def assert_same_as_cocoeval(d: dict, num_classes: int) -> coco.CocoResult:
    got = evaluate(d, num_classes)
    ev = cocoeval(d, num_classes)
    assert ev is not None
    np.testing.assert_allclose(got.stats, ev.stats, atol=TOL, rtol=0)
    np.testing.assert_allclose(got.recall, ev.eval["recall"], atol=TOL, rtol=0)
    np.testing.assert_allclose(
        got.precision, ev.eval["precision"][0, :, :, 0, -1], atol=TOL, rtol=0
    )
    ap = ev.eval["precision"][:, :, :, :, -1]  # (T, R, C, A)
    expected = np.where((ap > -1).all(axis=1), ap.mean(axis=1), -1)
    np.testing.assert_allclose(got.ap, expected, atol=TOL, rtol=0)
    return got


# ---------------------------------------------------------------- the oracle, generated sets
@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24))
def test_generated_sets_equal_cocoeval(seed):
    d = generated(
        seed, crowd=0.15 if seed % 3 == 0 else 0.0, max_pred=(5, 30, 160)[seed % 3]
    )  # every third: > 100 per image and class
    assert_same_as_cocoeval(d, 3)


@pytest.mark.parametrize("seed", range(4))
def test_many_classes_some_never_predicted_or_absent_equal_cocoeval(seed):
    d = generated(100 + seed, images=10, classes=12, max_pred=12)
    got = assert_same_as_cocoeval(d, 15)  # classes 12-14: in neither set
    assert np.all(got.ap[:, 12:] == -1)


def test_single_class_equals_cocoeval():
    assert_same_as_cocoeval(generated(7, classes=1, max_pred=40), 1)


@pytest.mark.parametrize("seed", range(6))
def test_the_numpy_twin_gives_the_same_rows_and_numbers(seed):
    d = generated(200 + seed, crowd=0.2, max_pred=(8, 120)[seed % 2])
    got = coco.coco_match(**d, num_classes=3)
    want = reference.coco_match(**d, num_classes=3)
    for name in coco.CocoMatches._fields:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    a, b = coco.coco_accumulate(got), reference.coco_accumulate(want)
    for name in coco.CocoResult._fields:
        np.testing.assert_allclose(
            getattr(a, name), getattr(b, name), atol=1e-12, rtol=0, err_msg=name
        )


@pytest.mark.parametrize("split", [[1], [2, 5], [3, 3, 3, 3]])
def test_batches_concatenate_to_the_whole_set(split):
    d = generated(300, images=12, crowd=0.1)
    whole = evaluate(d, 3)
    parts, start = [], 0
    for size in split + [12 - sum(split)]:
        stop = start + size
        p0, p1 = d["pred_offsets"][start], d["pred_offsets"][stop]
        g0, g1 = d["gt_offsets"][start], d["gt_offsets"][stop]
        parts.append(
            coco.coco_match(
                d["pred_offsets"][start : stop + 1] - p0,
                d["pred_xyxy"][p0:p1],
                d["pred_scores"][p0:p1],
                d["pred_class"][p0:p1],
                d["gt_offsets"][start : stop + 1] - g0,
                d["gt_xyxy"][g0:g1],
                d["gt_class"][g0:g1],
                3,
                d["gt_crowd"][g0:g1],
            )
        )
        start = stop
    split_result = coco.coco_accumulate(coco.concat_matches(parts, 3))
    for name in coco.CocoResult._fields:
        np.testing.assert_array_equal(getattr(split_result, name), getattr(whole, name))


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31), st.sampled_from([None, np.linspace(0, 1, 11)]))
def test_f1_sweep_matches_the_twin(seed, grid):
    d = generated(seed, max_pred=20)
    m = coco.coco_match(**d, num_classes=3)
    got = coco.f1_sweep(m, grid)
    want = reference.f1_sweep(m, grid)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-12, rtol=0)


# ---------------------------------------------------------------- edge cases, one by one
def one_image(preds, scores, gts, pred_class=None, gt_class=None, crowd=None) -> dict:
    pb = np.array(preds, np.float32).reshape(-1, 4)
    gb = np.array(gts, np.float32).reshape(-1, 4)
    return {
        "pred_offsets": np.array([0, len(pb)]),
        "pred_xyxy": pb,
        "pred_scores": np.array(scores, np.float32),
        "pred_class": np.zeros(len(pb), np.int64)
        if pred_class is None
        else np.array(pred_class, np.int64),
        "gt_offsets": np.array([0, len(gb)]),
        "gt_xyxy": gb,
        "gt_class": np.zeros(len(gb), np.int64)
        if gt_class is None
        else np.array(gt_class, np.int64),
        "gt_crowd": np.zeros(len(gb), bool) if crowd is None else np.array(crowd, bool),
    }


EDGE_CASES = {
    # the first prediction has IoU 5/7 with both boxes: COCO takes the later box, so the
    # second prediction (IoU 0.85 with the first box, 0.41 with the second) finds its box
    # free; keeping the first box instead would make it a false positive
    "equal IoUs": one_image(
        [[10, 0, 70, 60], [-5, 0, 55, 60]],
        [0.9, 0.8],
        [[0, 0, 60, 60], [20, 0, 80, 60], [100, 100, 130, 130]],
    ),
    "equal IoUs, classes apart": one_image(
        [[10, 0, 70, 60], [10, 0, 70, 60]],
        [0.9, 0.8],
        [[0, 0, 60, 60], [20, 0, 80, 60]],
        [0, 1],
        [0, 1],
    ),
    "boxes outside the image": one_image(
        [[-40, -40, 20, 20], [250, 250, 330, 330], [-10, 5, 40, 50]],
        [0.9, 0.7, 0.6],
        [[-40, -40, 20, 20], [250, 250, 300, 300], [0, 0, 40, 50]],
    ),
    "zero-area predictions take slots and count": one_image(
        [[10, 10, 10, 50], [10, 10, 50, 10], [10, 10, 50, 50], [0, 0, 0, 0]],
        [0.95, 0.9, 0.5, 0.99],
        [[10, 10, 50, 50]],
    ),
    "a class never predicted": one_image(
        [[0, 0, 40, 40]], [0.9], [[0, 0, 40, 40], [50, 50, 90, 90]], [0], [0, 1]
    ),
    "a predicted class absent from the ground truth": one_image(
        [[0, 0, 40, 40], [0, 0, 40, 40]], [0.9, 0.95], [[0, 0, 40, 40]], [0, 1], [0]
    ),
    "crowd boxes absorb several predictions": one_image(
        [[0, 0, 20, 20], [20, 0, 40, 20], [0, 0, 40, 40], [60, 60, 90, 90]],
        [0.9, 0.8, 0.7, 0.6],
        [[0, 0, 40, 40], [60, 60, 90, 90]],
        crowd=[True, False],
    ),
    "tied scores": one_image(
        [[0, 0, 40, 40], [2, 0, 40, 40], [0, 0, 41, 40]],
        [0.5, 0.5, 0.5],
        [[0, 0, 40, 40], [1, 0, 40, 40]],
    ),
    "area borders 32^2 and 96^2": one_image(
        [[0, 0, 32, 32], [100, 100, 196, 196], [40, 0, 72, 31]],
        [0.9, 0.8, 0.7],
        [[0, 0, 32, 32], [100, 100, 196, 196], [40, 0, 73, 32]],
    ),
}


@pytest.mark.parametrize("d", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_edge_cases_equal_cocoeval(d):
    assert_same_as_cocoeval(d, 2)


def test_equal_ious_go_to_the_later_box_as_in_cocoeval():
    m = coco.coco_match(**EDGE_CASES["equal IoUs"], num_classes=1)
    # both predictions match at IoU 0.5 (0.6 with each box): two true positives
    assert (m.matched & 1).tolist() == [1, 1]
    assert evaluate(EDGE_CASES["equal IoUs"], 1).recall[0, 0, 0, -1] == pytest.approx(2 / 3)


def test_more_than_100_detections_per_image_are_capped_per_class():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 400, (150, 2)).astype(np.float32)
    preds = np.concatenate([x, x + 30], axis=1)
    d = one_image(preds, rng.random(150), preds[::3])  # the last third of the GT unmatched
    got = assert_same_as_cocoeval(d, 1)
    assert len(coco.coco_match(**d, num_classes=1).det_index) == 100
    assert got.stats[8] < 1  # AR@100: some ground truth only the 101st+ matched


def test_no_ground_truth_gives_minus_one_everywhere():
    d = one_image([[0, 0, 10, 10]], [0.9], [])
    got = evaluate(d, 2)
    ev = cocoeval(d, 2)
    np.testing.assert_array_equal(got.stats, ev.stats)
    assert np.all(got.stats == -1)
    assert np.all(got.ap == -1) and np.all(got.precision == -1)


def test_no_predictions_give_zero_where_there_is_ground_truth():
    # COCO.loadRes cannot load an empty list: COCOeval's accumulate with no detections
    # gives precision 0 and recall 0 for present classes and ranges, -1 elsewhere.
    d = one_image([], [], [[0, 0, 40, 40], [0, 0, 200, 200]])
    got = evaluate(d, 1)
    # small (40x40 is medium) has none; large has the 200x200 box
    expected = [0, 0, 0, -1, 0, 0, 0, 0, 0, -1, 0, 0]
    np.testing.assert_array_equal(got.stats, expected)


def test_empty_batch():
    empty = one_image([], [], [])
    got = evaluate(empty, 3)
    assert np.all(got.stats == -1)
    assert coco.concat_matches([], 3).num_gt.shape == (3, 4)
    assert np.all(coco.coco_accumulate(coco.concat_matches([], 3)).stats == -1)


def test_class_ap_is_nan_for_absent_classes():
    got = evaluate(EDGE_CASES["a class never predicted"], 3)
    ap = got.class_ap()
    assert ap[0] == pytest.approx(1.0) and ap[1] == 0.0 and np.isnan(ap[2])


def test_errors_state_expected_and_got():
    d = one_image([[0, 0, 1, 1]], [0.5], [[0, 0, 1, 1]])
    with pytest.raises(ValueError, match=r"pred_class contains unknown class id 3"):
        coco.coco_match(**{**d, "pred_class": np.array([3])}, num_classes=2)
    with pytest.raises(ValueError, match=r"gt_offsets must start at 0"):
        coco.coco_match(**{**d, "gt_offsets": np.array([0, 2])}, num_classes=2)
    with pytest.raises(ValueError, match=r"at most 64"):
        coco.coco_match(**d, num_classes=2, iou_thresholds=np.linspace(0.5, 0.95, 20))


def test_warmup_covers_coco():
    assert "coco" in kernels.KERNEL_GROUPS
    assert set(kernels.warmup(["coco"])) == {"coco"}
