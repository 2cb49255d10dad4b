"""fastevalcb.kernels.boxes vs its numpy twin in tests/reference.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastevalcb import kernels
from tests.helpers import reference

SETTINGS = settings(max_examples=80, deadline=None)
coord = st.floats(-100, 400, width=32)


def boxes_strategy(max_n=20):
    return st.integers(0, max_n).flatmap(lambda n: arrays(np.float32, (n, 4), elements=coord))


FORMATS_AND_ALIAS = (*reference.FORMATS, "cxcywh")


@pytest.mark.slow
@SETTINGS
@given(boxes_strategy(), st.sampled_from(FORMATS_AND_ALIAS), st.sampled_from(FORMATS_AND_ALIAS))
def test_convert_matches_reference(boxes, fin, fout):
    size = (240, 320)
    got = kernels.convert_boxes(boxes, fin, fout, size)
    want = reference.convert_boxes(boxes, fin, fout, size)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-4)


@SETTINGS
@given(boxes_strategy(), st.sampled_from(reference.FORMATS))
def test_convert_round_trip(boxes, fmt):
    there = kernels.convert_boxes(boxes, "xyxy", fmt, (50, 70))
    back = kernels.convert_boxes(there, fmt, "xyxy", (50, 70))
    np.testing.assert_allclose(back, boxes, atol=1e-3)


@settings(max_examples=25, deadline=None)
@given(boxes_strategy(8), st.sampled_from(reference.FORMATS), st.sampled_from(reference.FORMATS))
def test_convert_matches_keras_convert_format(boxes, fin, fout):
    """Same numbers as ``keras.utils.bounding_boxes.convert_format`` for every pair."""
    import keras

    if not hasattr(keras.utils, "bounding_boxes"):
        pytest.skip(f"keras.utils.bounding_boxes is not in Keras {keras.__version__}")
    height, width = 30, 70
    want = keras.ops.convert_to_numpy(
        keras.utils.bounding_boxes.convert_format(
            boxes, source=fin, target=fout, height=height, width=width
        )
    )
    got = kernels.convert_boxes(boxes, fin.upper(), fout, (height, width))  # any case
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_each_format_decodes_to_the_same_xyxy_box():
    h, w = 40.0, 100.0
    x0, y0, x1, y1 = 10.0, 4.0, 30.0, 24.0
    cx, cy, bw, bh = 20.0, 14.0, 20.0, 20.0
    spelled = {
        "xyxy": [x0, y0, x1, y1],
        "yxyx": [y0, x0, y1, x1],
        "xywh": [x0, y0, bw, bh],
        "center_xywh": [cx, cy, bw, bh],
        "cxcywh": [cx, cy, bw, bh],
        "center_yxhw": [cy, cx, bh, bw],
        "rel_xyxy": [x0 / w, y0 / h, x1 / w, y1 / h],
        "rel_yxyx": [y0 / h, x0 / w, y1 / h, x1 / w],
        "rel_xywh": [x0 / w, y0 / h, bw / w, bh / h],
        "rel_center_xywh": [cx / w, cy / h, bw / w, bh / h],
    }
    for fmt, box in spelled.items():
        got = kernels.convert_boxes([box], fmt, "xyxy", (h, w))
        np.testing.assert_allclose(got, [[x0, y0, x1, y1]], atol=1e-5, err_msg=fmt)
        np.testing.assert_allclose(
            kernels.convert_boxes(got, "xyxy", fmt, (h, w)), [box], atol=1e-5, err_msg=fmt
        )


def test_box_format_names():
    assert kernels.box_format_name("CXCYWH") == "center_xywh"
    assert kernels.box_format_name("xyxy", normalized=True) == "rel_xyxy"
    assert kernels.box_format_name("cxcywh", normalized=True) == "rel_center_xywh"
    assert kernels.box_format_name("rel_yxyx", normalized=True) == "rel_yxyx"
    with pytest.raises(ValueError, match="no relative version"):
        kernels.box_format_name("center_yxhw", normalized=True)
    with pytest.raises(ValueError, match="box format must be one of"):
        kernels.box_format_name("xxyy")


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
    with pytest.raises(ValueError, match="in_format: box format must be one of"):
        kernels.convert_boxes(np.zeros((1, 4)), "yxxy")
    with pytest.raises(ValueError, match="image_size"):
        kernels.convert_boxes(np.zeros((1, 4)), "rel_xyxy")


@pytest.mark.slow
@SETTINGS
@given(
    st.integers(0, 3),
    st.integers(0, 6),
    st.sampled_from(FORMATS_AND_ALIAS),
    st.integers(0, 2**32 - 1),
    st.booleans(),
)
def test_box_validity_matches_reference(b, k, fmt, seed, with_skip):
    """NaN/inf coordinates or scores, inverted and zero-area boxes, padding skipped."""
    rng = np.random.default_rng(seed)
    boxes = rng.uniform(-5, 5, (b, k, 4)).astype(np.float32)
    boxes[rng.random((b, k, 4)) < 0.2] = np.nan
    boxes[rng.random((b, k, 4)) < 0.1] = np.inf
    boxes[rng.random((b, k, 4)) < 0.2] = 0.0  # zero-area in both layouts
    scores = rng.uniform(0, 1, (b, k)).astype(np.float32)
    scores[rng.random((b, k)) < 0.2] = np.nan
    skip = rng.random((b, k)) < 0.3 if with_skip else None
    got = kernels.box_validity(boxes, scores, fmt, skip)
    assert got.dtype == np.uint8 and got.shape == (b, k)
    np.testing.assert_array_equal(got, reference.box_validity(boxes, scores, fmt, skip))


def test_box_validity_errors_name_the_shapes():
    with pytest.raises(ValueError, match=r"boxes must have shape \(B, K, 4\), got \(2, 4\)"):
        kernels.box_validity(np.zeros((2, 4)), np.zeros(2), "xyxy")
    with pytest.raises(ValueError, match="scores"):
        kernels.box_validity(np.zeros((1, 2, 4)), np.zeros((1, 3)), "xyxy")
    with pytest.raises(ValueError, match="box_format|format"):
        kernels.box_validity(np.zeros((1, 2, 4)), np.zeros((1, 2)), "xyzw")
