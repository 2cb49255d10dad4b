"""fastevalcb.kernels.detection_metrics vs its numpy twin in tests/reference.py."""

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastevalcb import kernels
from tests.helpers import reference

SETTINGS = settings(max_examples=60, deadline=None)
NAN, INF = float("nan"), float("inf")

# Boxes on a coarse grid: identical boxes, exact-threshold IoUs (1/3, 1/2, 2/3, ...) and
# zero-area boxes (a side of 0) are all likely; `bad_box` adds non-finite coordinates.
grid = st.integers(0, 4).map(lambda v: v * 8.0)
side = st.sampled_from([0.0, 8.0, 16.0, 16.0, 24.0, 24.0, 32.0])
good_box = st.tuples(grid, grid, side, side).map(lambda t: (t[0], t[1], t[0] + t[2], t[1] + t[3]))
bad_box = st.one_of(
    good_box, good_box, good_box, st.sampled_from([(NAN, 0, 8, 8), (0, 0, INF, 8), (-INF, 0, 8, 8)])
)
score = st.one_of(
    st.sampled_from([0.5, np.float32(0.9), NAN, INF, -INF]), st.floats(0, 1, width=32)
)
thresholds = st.sampled_from([0.1, 1 / 3, 0.5, 0.7, 1.0])
NUM_CLASSES = 3


def _boxes(rows):
    return np.array(rows, np.float32).reshape(-1, 4)


def near(gt):
    """A prediction close to ground-truth ``(box, class)``: one edge moved by -8, 0 or +8,
    usually the same class."""
    box, c = gt
    return st.tuples(
        st.integers(0, 3),
        st.sampled_from([-8.0, 0.0, 0.0, 8.0]),
        st.sampled_from([c, c, c, (c + 1) % NUM_CLASSES]),
    ).map(lambda t: (tuple(v + t[1] if k == t[0] else v for k, v in enumerate(box)), t[2]))


@st.composite
def packed_batch(draw, boxes=bad_box, max_images=4, max_pred=10, max_gt=8):
    """Predictions and ground truth of ``B`` images in the packed layout; about two thirds of
    the predictions are jittered copies of a ground-truth box of their image."""
    cls = st.integers(0, NUM_CLASSES - 1)
    pred_offsets, gt_offsets, preds, gts = [0], [0], [], []
    for _ in range(draw(st.integers(0, max_images))):
        gt = draw(st.lists(st.tuples(boxes, cls), max_size=max_gt))
        anywhere = st.tuples(boxes, cls)
        close = st.sampled_from(gt).flatmap(near)
        pred = st.one_of(anywhere, close, close) if gt else anywhere
        preds += draw(st.lists(pred, max_size=max_pred))
        gts += gt
        pred_offsets.append(len(preds))
        gt_offsets.append(len(gts))
    n = len(preds)
    return dict(
        pred_offsets=np.array(pred_offsets, np.int64),
        pred_xyxy=_boxes([p[0] for p in preds]),
        pred_scores=draw(arrays(np.float32, n, elements=score)),
        pred_class=np.array([p[1] for p in preds], np.int32),
        gt_offsets=np.array(gt_offsets, np.int64),
        gt_xyxy=_boxes([g[0] for g in gts]),
        gt_class=np.array([g[1] for g in gts], np.int32),
    )


def _ap_args(d, tp):
    return (
        d["pred_offsets"],
        d["pred_scores"],
        d["pred_class"],
        tp,
        d["gt_offsets"],
        d["gt_class"],
        NUM_CLASSES,
    )


def brute_force_ap(scores, tp, num_gt):
    """AP from its definition, in exact fractions: the mean over the recall levels
    ``k / num_gt`` (k = 1..num_gt) of the best precision of any PR point reaching that level
    (0 if none does). The ranking is Python's ``sorted``; NaN last, ties by index."""
    if num_gt == 0:
        return math.nan
    order = sorted(
        range(len(scores)),
        key=lambda i: (math.isnan(scores[i]), 0 if math.isnan(scores[i]) else -float(scores[i]), i),
    )
    points, hits = [], 0
    for rank, i in enumerate(order, 1):
        hits += bool(tp[i])
        points.append((hits, Fraction(hits, rank)))
    return float(
        sum(
            max([p for h, p in points if h >= k], default=Fraction(0)) for k in range(1, num_gt + 1)
        )
        / num_gt
    )


# ---------------------------------------------------------------- hand-computed case
def known_case():
    """4 images, classes 0 and 1 (num_classes=3, class 2 never appears).

    image 0  GT: g0 c0 [0,0,10,10], g1 c0 [20,20,30,30], g2 c1 [0,0,10,10]
             p0 c0 [0,0,10,10]   0.8  duplicate of g0; visited after p1 -> FP
             p1 c0 [0,0,10,10]   0.9  IoU 1 with g0 -> TP
             p2 c0 [20,20,30,35] 0.7  IoU(g1) = 100/150 = 0.667 -> TP
             p3 c1 [5,0,15,10]   0.6  IoU(g2) = 50/150 = 0.333 < 0.5 -> FP; g2 missed -> FN
    image 1  GT: g3 c1 [0,0,10,10]
             p4 c1 [0,0,10,10]   0.5  -> TP
             p5 c0 [50,50,60,60] 0.95 class 0 has no GT in image 1 -> FP
    image 2  no GT;   p6 c1 [0,0,10,10] NaN score -> FP
    image 3  GT: g4 c0 [0,0,4,4]; no predictions -> FN
    """
    return dict(
        pred_offsets=[0, 4, 6, 7, 7],
        pred_xyxy=[
            [0, 0, 10, 10],
            [0, 0, 10, 10],
            [20, 20, 30, 35],
            [5, 0, 15, 10],
            [0, 0, 10, 10],
            [50, 50, 60, 60],
            [0, 0, 10, 10],
        ],
        pred_scores=[0.8, 0.9, 0.7, 0.6, 0.5, 0.95, NAN],
        pred_class=[0, 0, 0, 1, 1, 0, 1],
        gt_offsets=[0, 3, 4, 4, 5],
        gt_xyxy=[[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 4, 4]],
        gt_class=[0, 0, 1, 1, 0],
    )


@pytest.mark.slow
def test_known_case_by_hand():
    d = known_case()
    tp, counts = kernels.match_detections(**d, num_classes=3)
    assert tp.tolist() == [False, True, True, False, True, False, False]
    assert counts.tolist() == [[2, 2, 1], [1, 1, 0], [0, 1, 0], [0, 0, 1]]

    # image 0, class 0: ranks p1 TP (P=1, R=1/2), p0 FP (1/2, 1/2), p2 TP (2/3, 1);
    #   envelope at R=1/2 is 1, at R=1 is 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    # image 0, class 1: p3 FP, 1 GT -> AP = 0;  image AP = (5/6 + 0) / 2 = 5/12
    # image 1: class 1 only (p5's class 0 has no GT there): p4 TP -> AP = 1
    # image 2: no GT -> NaN;  image 3: class 0, 1 GT, no predictions -> 0
    ap = kernels.per_image_ap(
        d["pred_offsets"], d["pred_scores"], d["pred_class"], tp, d["gt_offsets"], d["gt_class"], 3
    )
    assert ap.dtype == np.float32
    np.testing.assert_array_equal(ap, np.array([5 / 12, 1.0, np.nan, 0.0], np.float32))

    # dataset, class 0 (3 GT): p5 FP (P=0, R=0), p1 TP (1/2, 1/3), p0 FP (1/3, 1/3),
    #   p2 TP (1/2, 2/3); envelope 1/2 at both recall steps -> AP = 2 * 1/3 * 1/2 = 1/3
    # dataset, class 1 (2 GT): p3 FP (0, 0), p4 TP (1/2, 1/2), p6 NaN ranks last, FP
    #   (1/3, 1/2) -> AP = 1/2 * 1/2 = 1/4
    # class 2: no GT -> NaN;  mAP = (1/3 + 1/4) / 2 = 7/24
    m, per_class = kernels.mean_average_precision(
        d["pred_scores"], d["pred_class"], tp, d["gt_class"], 3
    )
    assert per_class.dtype == np.float64
    np.testing.assert_allclose(per_class, [1 / 3, 1 / 4, np.nan], rtol=1e-15)
    assert m == pytest.approx(7 / 24, rel=1e-15)

    # image 0: P = 2/4, R = 2/3; image 1: 1/2, 1; image 2: 0/1, no GT; image 3: no preds, 0/1
    precision, recall = kernels.precision_recall(counts)
    np.testing.assert_array_equal(precision, np.array([0.5, 0.5, 0.0, np.nan], np.float32))
    np.testing.assert_array_equal(recall, np.array([2 / 3, 1.0, np.nan, 0.0], np.float32))

    # the numpy twins agree on the same case
    rtp, rcounts = reference.match_detections(**d)
    np.testing.assert_array_equal(rtp, tp)
    np.testing.assert_array_equal(rcounts, counts)


# ---------------------------------------------------------------- kernels vs numpy twins
@pytest.mark.slow
@SETTINGS
@given(packed_batch(), thresholds)
def test_match_matches_reference(d, thr):
    tp, counts = kernels.match_detections(**d, iou_threshold=thr, num_classes=NUM_CLASSES)
    want_tp, want_counts = reference.match_detections(**d, iou_threshold=thr)
    np.testing.assert_array_equal(tp, want_tp)
    np.testing.assert_array_equal(counts, want_counts)
    assert tp.dtype == np.bool_ and counts.dtype == np.int64
    assert counts.shape == (len(d["pred_offsets"]) - 1, 3)
    np.testing.assert_array_equal(counts[:, 0] + counts[:, 1], np.diff(d["pred_offsets"]))
    np.testing.assert_array_equal(counts[:, 0] + counts[:, 2], np.diff(d["gt_offsets"]))
    assert counts[:, 0].sum() == tp.sum()


@pytest.mark.slow
@SETTINGS
@given(
    st.integers(0, 20).flatmap(
        lambda n: st.tuples(arrays(np.float32, n, elements=score), arrays(np.bool_, n))
    ),
    st.integers(0, 4),
)
def test_average_precision_matches_reference_and_brute_force(case, extra_gt):
    scores, tp = case
    num_gt = int(tp.sum()) + extra_gt
    got = kernels.average_precision(scores, tp, num_gt)
    if num_gt == 0:
        assert math.isnan(got) and math.isnan(reference.average_precision(scores, tp, 0))
        return
    assert 0.0 <= got <= 1.0
    assert got == pytest.approx(reference.average_precision(scores, tp, num_gt), abs=1e-12)
    assert got == pytest.approx(brute_force_ap(scores, tp, num_gt), abs=1e-12)


@pytest.mark.slow
@SETTINGS
@given(packed_batch(), thresholds)
def test_per_image_ap_matches_reference(d, thr):
    tp, _ = kernels.match_detections(**d, iou_threshold=thr)
    got = kernels.per_image_ap(*_ap_args(d, tp))
    want = reference.per_image_ap(*_ap_args(d, tp))
    assert got.dtype == np.float32 and got.shape == (len(d["pred_offsets"]) - 1,)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    # NaN exactly for the images without ground truth
    np.testing.assert_array_equal(np.isnan(got), np.diff(d["gt_offsets"]) == 0)


@pytest.mark.slow
@SETTINGS
@given(packed_batch(), thresholds)
def test_mean_average_precision_matches_reference(d, thr):
    tp, _ = kernels.match_detections(**d, iou_threshold=thr)
    args = (d["pred_scores"], d["pred_class"], tp, d["gt_class"], NUM_CLASSES)
    m, ap = kernels.mean_average_precision(*args)
    want_m, want_ap = reference.mean_average_precision(*args)
    np.testing.assert_allclose(ap, want_ap, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m, want_m, rtol=1e-12, atol=1e-12)
    has_gt = np.bincount(d["gt_class"], minlength=NUM_CLASSES) > 0
    np.testing.assert_array_equal(np.isnan(ap), ~has_gt)


@SETTINGS
@given(arrays(np.int64, st.tuples(st.integers(0, 6), st.just(3)), elements=st.integers(0, 5)))
def test_precision_recall_matches_reference(counts):
    got_p, got_r = kernels.precision_recall(counts)
    want_p, want_r = reference.precision_recall(counts)
    np.testing.assert_array_equal(got_p, want_p)
    np.testing.assert_array_equal(got_r, want_r)
    assert got_p.dtype == got_r.dtype == np.float32


@pytest.mark.slow
@SETTINGS
@given(packed_batch(boxes=good_box))
def test_perfect_predictions_score_one(d):
    # predict every ground-truth box exactly; all are TP unless the box has zero area
    tp, counts = kernels.match_detections(
        d["gt_offsets"],
        d["gt_xyxy"],
        np.linspace(1, 0, len(d["gt_class"])),
        d["gt_class"],
        d["gt_offsets"],
        d["gt_xyxy"],
        d["gt_class"],
    )
    area = np.prod(d["gt_xyxy"][:, 2:] - d["gt_xyxy"][:, :2], axis=1)
    np.testing.assert_array_equal(tp, area > 0)
    if tp.all() and tp.size:
        ap = kernels.per_image_ap(
            d["gt_offsets"],
            np.ones(tp.size),
            d["gt_class"],
            tp,
            d["gt_offsets"],
            d["gt_class"],
            NUM_CLASSES,
        )
        assert np.all(ap[np.diff(d["gt_offsets"]) > 0] == 1.0)
        m, _ = kernels.mean_average_precision(
            np.ones(tp.size), d["gt_class"], tp, d["gt_class"], NUM_CLASSES
        )
        assert m == 1.0


# ---------------------------------------------------------------- documented edge cases
def _match_one(pred, scores, gt, pred_class=None, gt_class=None, thr=0.5):
    """match_detections on a single image."""
    pred, gt = _boxes(pred), _boxes(gt)
    pc = np.zeros(len(pred), np.int32) if pred_class is None else pred_class
    gc = np.zeros(len(gt), np.int32) if gt_class is None else gt_class
    args = ([0, len(pred)], pred, scores, pc, [0, len(gt)], gt, gc, thr)
    tp, counts = kernels.match_detections(*args)
    want_tp, want_counts = reference.match_detections(*args)
    np.testing.assert_array_equal(tp, want_tp)
    np.testing.assert_array_equal(counts, want_counts)
    return tp.tolist(), counts[0].tolist()


SQ = [0, 0, 10, 10]
EDGE_CASES = {
    # name: (pred boxes, scores, gt boxes, pred class, gt class, thr) -> (tp, [tp, fp, fn])
    "empty": (([], [], []), ([], [0, 0, 0])),
    "one_box_hit": (([SQ], [0.3], [SQ]), ([True], [1, 0, 0])),
    "one_box_no_gt": (([SQ], [0.3], []), ([False], [0, 1, 0])),
    "no_predictions": (([], [], [SQ, SQ]), ([], [0, 0, 2])),
    # tied scores: the lower index is visited first and takes the GT
    "tie_lower_index_wins": (([SQ, SQ], [0.5, 0.5], [SQ]), ([True, False], [1, 1, 0])),
    # the NaN score ranks last, so the worse (IoU 0.8) box with a real score takes the GT
    "nan_score_last": (([SQ, [0, 0, 10, 8]], [NAN, 0.1], [SQ]), ([False, True], [1, 1, 0])),
    # -inf still outranks NaN
    "neg_inf_before_nan": (([SQ, SQ], [NAN, -INF], [SQ]), ([False, True], [1, 1, 0])),
    # zero-area boxes have IoU 0 with everything, even an identical box
    "degenerate_pred_and_gt": (
        ([[5, 5, 5, 5], [0, 0, 0, 10]], [0.9, 0.8], [[5, 5, 5, 5], [0, 0, 0, 10]]),
        ([False, False], [0, 2, 2]),
    ),
    "non_finite_pred": (([[0, 0, NAN, 10]], [0.9], [SQ]), ([False], [0, 1, 1])),
    # exactly at the threshold counts: IoU([0,0,10,10], [0,0,10,5]) = 0.5
    "iou_equal_threshold": (([[0, 0, 10, 5]], [0.9], [SQ]), ([True], [1, 0, 0])),
    "iou_just_below": (([[0, 0, 10, 4.9]], [0.9], [SQ]), ([False], [0, 1, 1])),
    # the best match among the *unmatched* GT: the second prediction falls back to g1
    # (IoU 0.6 >= 0.5) after the first took g0 (COCO rule; the VOC devkit would say FP)
    "falls_back_to_unmatched": (
        ([SQ, SQ], [0.9, 0.8], [SQ, [0, 0, 10, 6]]),
        ([True, True], [2, 0, 0]),
    ),
    # each prediction takes the unmatched GT with the highest IoU, not the first one above
    # the threshold: p0 takes g1 (IoU 1, not g0 at 0.6), leaving g0 for p1 (IoU 2/3; p1 has
    # only IoU 0.4 with g1)
    "highest_iou_gt_wins": (
        ([SQ, [0, 0, 10, 4]], [0.9, 0.8], [[0, 0, 10, 6], SQ]),
        ([True, True], [2, 0, 0]),
    ),
    # IoU tie between two unmatched GT boxes (0.5 each): the lower GT index is taken, so p1
    # (IoU 1 with g0, 0 with g1) finds nothing left. (pycocotools would take g1, the last.)
    "iou_tie_lower_gt_index": (
        ([SQ, [0, 0, 10, 5]], [0.9, 0.8], [[0, 0, 10, 5], [0, 5, 10, 10]]),
        ([True, False], [1, 1, 1]),
    ),
    # a class mismatch never matches
    "other_class": (([SQ], [0.9], [SQ], [1], [0]), ([False], [0, 1, 1])),
    "threshold_one_needs_identical": (
        ([SQ, [0, 0, 10, 9.5]], [0.5, 0.9], [SQ], None, None, 1.0),
        ([True, False], [1, 1, 0]),
    ),
}


@pytest.mark.parametrize("args, expected", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_match_edge_cases(args, expected):
    assert _match_one(*args) == expected


@pytest.mark.parametrize(
    "scores, tp, num_gt, expected",
    [
        ([], [], 3, 0.0),  # no predictions
        ([0.9], [True], 1, 1.0),
        ([0.9], [False], 1, 0.0),
        ([0.9, 0.8], [False, True], 1, 0.5),  # TP at rank 2: precision 1/2
        ([0.8, 0.9], [True, False], 1, 0.5),  # same, input order does not matter
        ([0.5, 0.5], [False, True], 1, 0.5),  # tie: lower index ranks first
        ([0.5, 0.5], [True, False], 1, 1.0),
        ([NAN, 0.1], [True, False], 1, 0.5),  # NaN ranks last
        ([0.9, 0.8, 0.7], [True, False, True], 4, (1 + 2 / 3) / 4),  # recall never reaches 1
        ([0.9, 0.8, 0.7, 0.6], [False, True, False, True], 2, (0.5 + 0.5) / 2),  # envelope
    ],
)
def test_average_precision_cases(scores, tp, num_gt, expected):
    assert kernels.average_precision(scores, tp, num_gt) == pytest.approx(expected, abs=1e-15)
    assert reference.average_precision(scores, tp, num_gt) == pytest.approx(expected, abs=1e-15)
    assert brute_force_ap(scores, tp, num_gt) == pytest.approx(expected, abs=1e-15)


def test_no_ground_truth_gives_nan():
    assert math.isnan(kernels.average_precision([0.9], [False], 0))
    assert math.isnan(kernels.average_precision([], [], 0))
    m, ap = kernels.mean_average_precision([0.9], [1], [False], [], 2)
    assert math.isnan(m) and np.isnan(ap).all()
    ap = kernels.per_image_ap([0, 1, 1], [0.9], [1], [False], [0, 0, 0], [], 2)
    assert np.isnan(ap).all() and ap.shape == (2,)


def test_empty_batch():
    tp, counts = kernels.match_detections([0], np.zeros((0, 4)), [], [], [0], np.zeros((0, 4)), [])
    assert tp.shape == (0,) and counts.shape == (0, 3)
    assert kernels.per_image_ap([0], [], [], [], [0], [], 1).shape == (0,)
    p, r = kernels.precision_recall(np.zeros((0, 3)))
    assert p.shape == r.shape == (0,)


@pytest.mark.slow
def test_warmup_covers_detection_metrics():
    assert "detection_metrics" in kernels.warmup()


# ---------------------------------------------------------------- errors
def test_errors_state_expected_and_got():
    d = known_case()
    with pytest.raises(ValueError, match=r"unknown class id 1 .*\[0, 1\)"):
        kernels.match_detections(**d, num_classes=1)
    with pytest.raises(ValueError, match=r"gt_class contains unknown class id -1"):
        kernels.match_detections(**{**d, "gt_class": [0, 0, 1, -1, 0]})
    with pytest.raises(ValueError, match=r"pred_offsets must start at 0.*end at 7.*got \[0, 4, 6"):
        kernels.match_detections(**{**d, "pred_offsets": [0, 4, 6]})
    with pytest.raises(ValueError, match=r"gt_offsets must .*non-decreasing"):
        kernels.match_detections(**{**d, "gt_offsets": [0, 3, 2, 4, 5]})
    with pytest.raises(ValueError, match=r"same images: got 4 and 3 images"):
        kernels.match_detections(**{**d, "gt_offsets": [0, 3, 4, 5]})
    with pytest.raises(ValueError, match=r"pred_scores must have shape \(7,\), got \(6,\)"):
        kernels.match_detections(**{**d, "pred_scores": np.ones(6)})
    with pytest.raises(ValueError, match=r"gt_xyxy must have shape \(N, 4\), got \(5, 5\)"):
        kernels.match_detections(**{**d, "gt_xyxy": np.ones((5, 5))})
    with pytest.raises(ValueError, match=r"iou_threshold must be in \(0, 1\], got 0"):
        kernels.match_detections(**d, iou_threshold=0)
    with pytest.raises(ValueError, match=r"tp has 2 true positives but num_gt is only 1"):
        kernels.average_precision([0.9, 0.8], [True, True], 1)
    with pytest.raises(ValueError, match=r"tp must have shape \(2,\), got \(3,\)"):
        kernels.average_precision([0.9, 0.8], [True, True, False], 5)
    with pytest.raises(ValueError, match=r"num_gt must be an integer >= 0"):
        kernels.average_precision([], [], -1)
    with pytest.raises(ValueError, match=r"num_classes must be an integer >= 1, got 0"):
        kernels.mean_average_precision([], [], [], [], 0)
    with pytest.raises(ValueError, match=r"counts must have shape \(N, 3\), got \(2, 2\)"):
        kernels.precision_recall(np.zeros((2, 2)))


def test_inconsistent_tp_is_rejected():
    d = known_case()
    tp = np.ones(7, bool)  # image 0 has 2 GT boxes of class 0 but 3 predictions marked TP
    with pytest.raises(
        ValueError,
        match=r"tp marks 3 predictions of class 0 in image 0 as true "
        r"positives but there are only 2 ground-truth",
    ):
        kernels.per_image_ap(*_ap_args(d, tp))
    with pytest.raises(
        ValueError,
        match=r"tp marks 4 predictions of class 0 as true positives "
        r"but there are only 3",
    ):
        kernels.mean_average_precision(d["pred_scores"], d["pred_class"], tp, d["gt_class"], 3)
