"""fastevalcb.types: validation messages and the packed batch built with the kernels."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastevalcb.types import ClassPredictions, Detections, PackedDetections, SegmentationMasks
from tests.helpers import reference


def test_messages_state_expected_and_got():
    with pytest.raises(ValueError, match=r"xyxy must have shape \(N, 4\), got \(10, 5\)"):
        Detections(np.zeros((10, 5)), np.zeros(10))
    with pytest.raises(ValueError, match=r"scores must have shape \(2,\), got \(3,\)"):
        Detections(np.zeros((2, 4)), np.zeros(2), np.zeros(3))
    with pytest.raises(ValueError, match=r"xyxy must have shape \(3, 4\), got \(2, 4\)"):
        PackedDetections([0, 1, 3], np.zeros((2, 4)), np.zeros(3))
    with pytest.raises(ValueError, match="non-decreasing"):
        PackedDetections([0, 2, 1], np.zeros((1, 4)), np.zeros(1))
    with pytest.raises(ValueError, match=r"masks must have shape \(B, H, W\), got \(4, 4\)"):
        SegmentationMasks(np.zeros((4, 4), np.uint8), 3)
    with pytest.raises(ValueError, match=r"unknown class id 3.*\[0, 3\)"):
        SegmentationMasks(np.full((1, 2, 2), 3, np.uint8), 3)


def test_packed_image_and_from_list():
    a = Detections([[0, 0, 1, 1]], [2], [0.5])
    b = Detections(np.zeros((0, 4)), np.zeros(0), np.zeros(0))
    p = PackedDetections.from_list([a, b, a])
    assert p.offsets.tolist() == [0, 1, 1, 2] and p.num_images == 3
    assert len(p.image(1)) == 0 and p.image(2).class_id.tolist() == [2]
    assert p.image(0)[np.array([False])].xyxy.shape == (0, 4)
    assert PackedDetections.from_list([]).num_images == 0


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 4), st.integers(0, 10), st.data())
def test_from_padded_matches_reference_pipeline(b, m, data):
    cxcywh = data.draw(arrays(np.float32, (b, m, 4), elements=st.floats(-0.25, 1.25, width=32)))
    scores = data.draw(
        arrays(
            np.float32,
            (b, m),
            elements=st.one_of(st.floats(0, 1, width=32), st.sampled_from([np.nan, np.inf])),
        )
    )
    cls = data.draw(arrays(np.int32, (b, m), elements=st.integers(0, 3)))
    counts = data.draw(arrays(np.int64, b, elements=st.integers(0, m)))
    size = (60, 80)
    p = PackedDetections.from_padded(
        cxcywh,
        cls,
        scores,
        counts,
        "rel_center_xywh",
        image_size=size,
        iou_threshold=0.5,
        score_threshold=0.1,
        max_detections=4,
        num_classes=4,
    )
    xyxy = reference.clip_boxes(
        reference.convert_boxes(cxcywh, "rel_center_xywh", "xyxy", size), size
    )
    keep = reference.batched_nms_keep(xyxy, scores, cls, counts, 0.5, 0.1, 4)
    assert p.offsets.tolist() == [0] + np.cumsum(keep.sum(1)).tolist()
    np.testing.assert_allclose(p.xyxy, xyxy[keep], atol=1e-4)
    np.testing.assert_array_equal(p.scores, scores[keep])
    np.testing.assert_array_equal(p.class_id, cls[keep])


def test_from_padded_ground_truth_and_unknown_class():
    gt = PackedDetections.from_padded(np.ones((2, 3, 4)), np.zeros((2, 3)), counts=[1, 3])
    assert gt.scores is None and gt.offsets.tolist() == [0, 1, 4]
    with pytest.raises(ValueError, match=r"unknown class id 5.*\[0, 4\)"):
        PackedDetections.from_padded(np.ones((1, 1, 4)), [[5]], [[1.0]], num_classes=4)


def test_segmentation_and_class_predictions():
    logits = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    sm = SegmentationMasks.from_logits(logits)
    assert sm.num_classes == 5 and (sm.masks == logits.argmax(-1)).all()
    cp = ClassPredictions.from_logits(np.array([[0.0, 2.0], [3.0, 1.0]]), [1, 1], k=2)
    assert cp.pred.tolist() == [1, 0] and cp.correct.tolist() == [True, False]
    assert ClassPredictions.from_logits(np.zeros((1, 2))).correct is None
