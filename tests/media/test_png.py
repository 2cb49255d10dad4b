"""fastevalcb.media.png: our PNGs decode to the input pixels; PIL mode matches wandb."""

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from fastevalcb.media.png import (
    BACKENDS,
    as_image_array,
    default_backend,
    encode_png,
    encode_png_pil,
)

shapes = st.tuples(st.integers(2, 20), st.integers(2, 20), st.sampled_from([None, 1, 3, 4]))


@settings(max_examples=60, deadline=None)
@given(
    shapes.flatmap(lambda s: arrays(np.uint8, s[:2] if s[2] is None else s)),
    st.integers(0, 9),
    st.sampled_from(BACKENDS),
    st.sampled_from(["sub", "none"]),
)
def test_decodes_to_same_pixels(image, level, backend, row_filter):
    arr = as_image_array(image)
    data = encode_png(arr, level, backend=backend, row_filter=row_filter)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), arr)


def test_masks_without_a_row_filter_are_smaller():
    """Class masks (a shape on background) deflate better unfiltered: what masks use."""
    from fastevalcb.synthetic import make_shapes

    masks = make_shapes(8, 128, seed=1).masks
    sizes = {f: sum(len(encode_png(m, 1, row_filter=f)) for m in masks) for f in ("sub", "none")}
    assert sizes["none"] < sizes["sub"], sizes
    mask = masks[0]
    with pytest.raises(ValueError, match="row_filter must be 'sub' or 'none'"):
        encode_png(mask, 1, row_filter="paeth")


def test_isal_is_the_default_fast_backend_when_installed():
    pytest.importorskip("isal")
    assert default_backend(1) == "isal" and default_backend(6) == "zlib"
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    assert encode_png(image, 1) == encode_png(image, 1, backend="isal")
    assert encode_png(image, 1) != encode_png(image, 1, backend="zlib")
    with pytest.raises(ValueError, match="backend must be one of"):
        encode_png(image, 1, backend="lz4")


def test_mode_and_casting_follow_wandb_image():
    assert Image.open(io.BytesIO(encode_png(as_image_array(np.zeros((1, 4, 5, 1)))))).mode == "L"
    assert Image.open(io.BytesIO(encode_png(as_image_array(np.zeros((4, 5, 4)))))).mode == "RGBA"
    # wandb casts with astype(np.uint8): 300.7 -> 44
    assert as_image_array(np.full((2, 2), 300.7))[0, 0] == np.float64(300.7).astype(np.uint8)
    with pytest.raises(ValueError, match=r"image must have shape .*got \(4, 5, 2\)"):
        as_image_array(np.zeros((4, 5, 2)))


def test_pil_mode_is_byte_identical_to_wandb():
    import wandb

    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    stock = wandb.Image(img)
    with open(stock._path, "rb") as f:
        assert f.read() == encode_png_pil(img)
