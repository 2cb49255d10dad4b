"""fastevalcb.kernels.boxes vs its numpy twin in tests/reference.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import reference
from fastevalcb import kernels

SETTINGS = settings(max_examples=80, deadline=None)
coord = st.floats(-100, 400, width=32)


def boxes_strategy(max_n=20):
    return st.integers(0, max_n).flatmap(lambda n: arrays(np.float32, (n, 4), elements=coord))


@SETTINGS
@given(boxes_strategy(), st.sampled_from(reference.FORMATS), st.sampled_from(reference.FORMATS),
       st.booleans(), st.booleans())
def test_convert_matches_reference(boxes, fin, fout, nin, nout):
    size = (240, 320)
    got = kernels.convert_boxes(boxes, fin, fout, size, nin, nout)
    want = reference.convert_boxes(boxes, fin, fout, size, nin, nout)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)


@SETTINGS
@given(boxes_strategy(), st.sampled_from(reference.FORMATS))
def test_convert_round_trip(boxes, fmt):
    there = kernels.convert_boxes(boxes, "xyxy", fmt, (50, 70), out_normalized=True)
    back = kernels.convert_boxes(there, fmt, "xyxy", (50, 70), in_normalized=True)
    np.testing.assert_allclose(back, boxes, atol=1e-3)


def test_convert_keeps_padded_batch_shape():
    b = np.ones((2, 3, 4), np.float32)
    assert kernels.convert_boxes(b, "xywh", "xyxy").shape == (2, 3, 4)
    assert kernels.convert_boxes(b, "xywh", "xyxy")[0, 0].tolist() == [1, 1, 2, 2]


@SETTINGS
@given(boxes_strategy())
def test_clip_matches_reference_inside_partly_and_wholly_outside(boxes):
    got = kernels.clip_boxes(boxes, (100, 200))
    np.testing.assert_array_equal(got, reference.clip_boxes(boxes, (100, 200)))
    assert (got[:, [0, 2]] <= 200).all() and (got >= 0).all() and (got[:, [1, 3]] <= 100).all()


@SETTINGS
@given(boxes_strategy(), boxes_strategy())
def test_iou_matches_reference(a, b):
    np.testing.assert_array_equal(kernels.box_iou_batch(a, b), reference.box_iou_batch(a, b))


def test_iou_of_zero_area_boxes_is_zero():
    z = np.array([[5, 5, 5, 9], [1, 1, 1, 1], [3, 3, 2, 2]], np.float32)
    assert not kernels.box_iou_batch(z, z).any()
    assert kernels.box_iou_batch([[0, 0, 2, 2]], [[1, 1, 3, 3]])[0, 0] == pytest.approx(1 / 7)


def test_errors():
    with pytest.raises(ValueError, match=r"boxes_a must have shape \(N, 4\), got \(10, 5\)"):
        kernels.box_iou_batch(np.zeros((10, 5)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="in_format must be one of"):
        kernels.convert_boxes(np.zeros((1, 4)), "yxyx")
    with pytest.raises(ValueError, match="image_size"):
        kernels.convert_boxes(np.zeros((1, 4)), in_normalized=True)
