"""fastevalcb.kernels.masks vs its numpy twin in tests/reference.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image
from sklearn.metrics import confusion_matrix as sk_confusion_matrix

from fastevalcb import kernels
from tests.helpers import reference

SETTINGS = settings(max_examples=60, deadline=None)
dims = st.tuples(st.integers(0, 3), st.integers(1, 9), st.integers(1, 9))


logit = st.one_of(st.sampled_from([0.0, 1.0, np.nan]), st.floats(-5, 5, width=32))


@SETTINGS
@given(
    st.tuples(dims, st.integers(1, 6)).flatmap(
        lambda dc: arrays(np.float32, dc[0] + (dc[1],), elements=logit)
    )
)
def test_argmax_matches_numpy_incl_ties_and_nan(logits):
    got = kernels.logits_argmax(logits)
    assert got.dtype == np.uint8
    np.testing.assert_array_equal(got, reference.logits_argmax(logits))


def test_argmax_float64_and_many_classes():
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 300))
    got = kernels.logits_argmax(x)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.argmax(x, -1))


@SETTINGS
@given(
    dims.flatmap(lambda d: arrays(np.uint8, d, elements=st.integers(0, 20))),
    st.integers(1, 20),
    st.integers(1, 20),
)
def test_resize_nearest_matches_reference(masks, oh, ow):
    np.testing.assert_array_equal(
        kernels.resize_nearest(masks, (oh, ow)), reference.resize_nearest(masks, (oh, ow))
    )


@pytest.mark.parametrize("size", [(7, 5), (32, 48), (3, 3), (13, 17)])
def test_resize_nearest_matches_pil(size):
    m = np.random.default_rng(1).integers(0, 21, (11, 9)).astype(np.uint8)
    pil = np.asarray(Image.fromarray(m).resize(size[::-1], Image.NEAREST))
    np.testing.assert_array_equal(kernels.resize_nearest(m, size), pil)


@st.composite
def pred_target(draw):
    b, h, w = draw(dims)
    c = draw(st.integers(1, 5))
    pred = draw(arrays(np.uint8, (b, h, w), elements=st.integers(0, c - 1)))
    target = draw(arrays(np.uint8, (b, h, w), elements=st.sampled_from(list(range(c)) + [255])))
    return pred, target, c


@SETTINGS
@given(pred_target(), st.booleans())
def test_segmentation_metrics_match_reference(case, use_ignore):
    pred, target, c = case
    if not use_ignore:
        target = np.where(target == 255, 0, target).astype(np.uint8)
    ignore = 255 if use_ignore else None
    iou, acc = kernels.segmentation_metrics(pred, target, c, ignore)
    riou, racc = reference.segmentation_metrics(pred, target, c, ignore)
    np.testing.assert_array_equal(iou, riou)
    np.testing.assert_array_equal(acc, racc)


def test_segmentation_metrics_unknown_ids():
    m = np.zeros((1, 2, 2), np.uint8)
    bad = m.copy()
    bad[0, 1, 1] = 7
    with pytest.raises(ValueError, match=r"target contains unknown class id 7.*\[0, 3\)"):
        kernels.segmentation_metrics(m, bad, 3)
    with pytest.raises(ValueError, match=r"pred contains unknown class id -2"):
        kernels.segmentation_metrics(np.full((1, 2, 2), -2), m, 3)
    with pytest.raises(ValueError, match="target must have the shape"):
        kernels.segmentation_metrics(m, np.zeros((1, 2, 3), np.uint8), 3)


@SETTINGS
@given(
    st.integers(0, 3),
    st.integers(1, 40),
    st.integers(1, 30),
    st.booleans(),
    st.integers(0, 2**32 - 1),
)
def test_segmentation_counts_match_reference(b, side, c, use_ignore, seed):
    """Both kernel paths: the joint histogram (``4 * C * C <= H * W``) and the direct loop."""
    rng = np.random.default_rng(seed)
    pred = rng.integers(0, c, (b, side, side)).astype(np.uint8)
    target = rng.integers(0, c, (b, side, side)).astype(np.uint8)
    if use_ignore:
        target[rng.random(target.shape) < 0.2] = 255
    ignore = 255 if use_ignore else None
    confusion = np.ones((c, c), np.int64)  # added to, not overwritten
    got = kernels.segmentation_counts(pred, target, c, ignore, confusion)
    for g, r in zip(got, reference.segmentation_counts(pred, target, c, ignore)):
        np.testing.assert_array_equal(g, r)
    # The same pass's confusion matrix is scikit-learn's over the non-ignored pixels.
    keep = target != 255 if use_ignore else np.ones(target.shape, bool)
    expected = (
        sk_confusion_matrix(target[keep], pred[keep], labels=range(c))
        if keep.any()  # scikit-learn refuses no samples at all
        else np.zeros((c, c), np.int64)
    )
    np.testing.assert_array_equal(confusion, 1 + expected)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64])
@pytest.mark.parametrize("side", [2, 64])  # direct loop; joint histogram
def test_segmentation_counts_name_the_first_unknown_id(dtype, side):
    m = np.zeros((2, side, side), dtype)
    bad = m.copy()
    bad[1, side - 1, 0] = 9
    bad[1, side - 1, 1] = 255
    with pytest.raises(
        ValueError,
        match=rf"target contains unknown class id 9 at flat index "
        rf"{side * side + (side - 1) * side}; .*\[0, 3\)",
    ):
        kernels.segmentation_counts(m, bad, 3, ignore_index=255)
    confusion = np.zeros((3, 3), np.int64)
    with pytest.raises(ValueError, match="pred contains unknown class id 9"):
        kernels.segmentation_counts(bad, m, 3, ignore_index=9, confusion=confusion)
    assert not confusion.any()  # a refused batch adds nothing, not its first image
    with pytest.raises(ValueError, match=r"confusion must be a \(3, 3\) int64 array"):
        kernels.segmentation_counts(m, m, 3, confusion=np.zeros((3, 3)))
    if dtype is not np.uint8:
        with pytest.raises(ValueError, match="target contains unknown class id -1"):
            kernels.segmentation_counts(m, np.full_like(m, -1), 3)


@SETTINGS
@given(
    dims.flatmap(lambda d: arrays(np.uint8, d, elements=st.integers(0, 4))),
    st.floats(0, 1),
    st.integers(0, 2**32 - 1),
)
def test_palette_and_overlay_match_reference(masks, alpha, seed):
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, (5, 3), dtype=np.uint8)
    images = rng.integers(0, 256, masks.shape + (3,), dtype=np.uint8)
    np.testing.assert_array_equal(
        kernels.palette_lookup(masks, palette), reference.palette_lookup(masks, palette)
    )
    np.testing.assert_array_equal(
        kernels.blend_overlay(images, masks, palette, alpha),
        reference.blend_overlay(images, masks, palette, alpha),
    )


def test_overlay_extremes_and_unknown_palette_index():
    img = np.full((1, 2, 2, 3), 10, np.uint8)
    m = np.zeros((1, 2, 2), np.uint8)
    pal = np.array([[200, 100, 0]], np.uint8)
    assert (kernels.blend_overlay(img, m, pal, 0.0) == img).all()
    assert (kernels.blend_overlay(img, m, pal, 1.0) == pal[0]).all()
    with pytest.raises(ValueError, match=r"masks contains unknown class id 1.*\[0, 1\)"):
        kernels.palette_lookup(m + 1, pal)


def test_warmup_compiles_everything():
    timings = kernels.warmup()
    assert set(timings) == {
        "classification",
        "boxes",
        "nms",
        "masks",
        "detection_metrics",
        "coco",
        "confusion",
        "curves",
    }
    assert set(timings) == set(kernels.KERNEL_GROUPS)


def test_warmup_of_some_groups_compiles_those():
    assert set(kernels.warmup(["masks", "nms"])) == {"masks", "nms"}
    assert kernels.warmup(()) == {}
    with pytest.raises(ValueError, match=r"unknown kernel groups \['mask'\]; expected"):
        kernels.warmup(["mask"])
