"""fastevalcb.kernels.nms vs its numpy twin in tests/reference.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastevalcb import kernels
from tests.helpers import reference

SETTINGS = settings(max_examples=100, deadline=None)
# Coarse grid coordinates make identical boxes, ties and exact-threshold IoUs likely.
coord = st.integers(-4, 12).map(lambda v: np.float32(v * 8))
score = st.one_of(
    st.sampled_from([0.5, np.float32(0.9), np.nan, np.inf, -np.inf]), st.floats(0, 1, width=32)
)
bad_coord = st.one_of(coord, st.sampled_from([np.nan, np.inf]))


@st.composite
def image_boxes(draw, max_n=25, coords=coord):
    n = draw(st.integers(0, max_n))
    boxes = draw(arrays(np.float32, (n, 4), elements=coords))
    scores = draw(arrays(np.float32, n, elements=score))
    cls = draw(arrays(np.int32, n, elements=st.integers(0, 2)))
    return boxes, scores, cls


nms_args = st.tuples(
    st.sampled_from([0.0, 0.3, 0.5, 1 / 3, 0.7, 1.0]),
    st.sampled_from([-np.inf, 0.0, 0.5]),
    st.sampled_from([-1, 0, 1, 3]),
    st.booleans(),
)


@SETTINGS
@given(image_boxes(coords=bad_coord), nms_args)
def test_nms_matches_reference(case, args):
    boxes, scores, cls = case
    iou, thr, k, agnostic = args
    got = kernels.nms_keep(boxes, scores, cls, iou, thr, k, class_agnostic=agnostic)
    want = reference.nms_keep(boxes, scores, cls, iou, thr, k, class_agnostic=agnostic)
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(
    st.integers(0, 4).flatmap(lambda b: st.lists(image_boxes(max_n=12), min_size=b, max_size=b)),
    nms_args,
)
def test_batched_nms_matches_reference_on_padded_input(cases, args):
    iou, thr, k, agnostic = args
    b, m = len(cases), 12
    boxes = np.full((b, m, 4), 7.0, np.float32)  # padding rows hold junk on purpose
    scores = np.full((b, m), 1.0, np.float32)
    cls = np.full((b, m), 99, np.int32)
    counts = np.array([len(c[1]) for c in cases], np.int64)
    for i, (bx, sc, cl) in enumerate(cases):
        boxes[i, : len(sc)], scores[i, : len(sc)], cls[i, : len(sc)] = bx, sc, cl
    got = kernels.batched_nms_keep(
        boxes, scores, cls, counts, iou, thr, k, num_classes=3, class_agnostic=agnostic
    )
    want = reference.batched_nms_keep(
        boxes, scores, cls, counts, iou, thr, k, class_agnostic=agnostic
    )
    np.testing.assert_array_equal(got, want)
    assert not got[np.arange(m)[None, :] >= counts[:, None]].any()


def test_documented_edge_cases():
    boxes = np.array([[0, 0, 10, 10]] * 4 + [[5, 5, 5, 5]] * 2, np.float32)
    scores = np.array([np.nan, 0.5, np.inf, 0.9, 0.2, 0.1], np.float32)
    keep = kernels.nms_keep(boxes, scores, None, 0.5)
    # NaN dropped; +inf ranks first and suppresses the identical boxes; zero-area boxes
    # have IoU 0 with everything so both survive.
    assert keep.tolist() == [False, False, True, False, True, True]
    assert kernels.nms_keep(np.zeros((0, 4)), np.zeros(0)).shape == (0,)
    one = kernels.nms_keep([[0, 0, 1, 1]], [0.3])
    assert one.tolist() == [True]
    # -inf scores only pass a -inf threshold; +inf passes any threshold
    assert kernels.nms_keep(boxes, [-np.inf] * 6, None, 1.0).all()
    assert kernels.nms_keep(boxes, [np.inf] * 6, None, 1.0, score_threshold=1e30).all()


def test_all_suppressed_but_the_best_and_classwise():
    boxes = np.array([[0, 0, 10, 10]] * 5, np.float32)
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5], np.float32)
    assert kernels.nms_keep(boxes, scores, None, 0.5).tolist() == [0, 0, 0, 0, 1]
    cls = [0, 1, 0, 1, 0]
    assert kernels.nms_keep(boxes, scores, cls, 0.5).tolist() == [0, 0, 0, 1, 1]
    agnostic = kernels.nms_keep(boxes, scores, cls, 0.5, class_agnostic=True)
    assert agnostic.tolist() == [0, 0, 0, 0, 1]
    assert kernels.nms_keep(boxes, scores, None, 1.0, max_detections=2).tolist() == [0, 0, 0, 1, 1]
    assert not kernels.nms_keep(boxes, scores, None, 0.5, score_threshold=0.9).any()


@pytest.mark.parametrize("bad", [3, -1])
def test_unknown_class_id_raises(bad):
    with pytest.raises(ValueError, match=rf"unknown class id {bad}.*\[0, 3\)"):
        kernels.nms_keep(np.zeros((2, 4)), np.ones(2), [0, bad], num_classes=3)
    with pytest.raises(ValueError, match=rf"unknown class id {bad}"):
        kernels.batched_nms_keep(
            np.zeros((1, 2, 4)), np.ones((1, 2)), [[0, bad]], [2], num_classes=3
        )


def test_padding_rows_are_not_checked_and_errors_are_clear():
    # an out-of-range id in a padded row is ignored
    kernels.batched_nms_keep(np.zeros((1, 2, 4)), np.ones((1, 2)), [[0, 99]], [1], num_classes=3)
    with pytest.raises(ValueError, match=r"scores must have shape \(3,\), got \(2,\)"):
        kernels.nms_keep(np.zeros((3, 4)), np.ones(2))
    with pytest.raises(ValueError, match=r"counts must be in \[0, 2\], got 5"):
        kernels.batched_nms_keep(np.zeros((1, 2, 4)), np.ones((1, 2)), None, [5])
    with pytest.raises(ValueError, match="iou_threshold"):
        kernels.nms_keep(np.zeros((1, 4)), np.ones(1), iou_threshold=1.5)
