"""box_json kernel vs its numpy/json twin: same text, numbers rounded to fixed decimals."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fastevalcb.kernels import box_json
from tests.helpers import reference

LABELS = {0: "cat", 1: 'say "hi"', 2: "naïve \\ tab\t", 4: "four"}


def _case(rng, counts, with_scores, scale):
    n = int(sum(counts))
    xyxy = rng.uniform(-scale, scale, (n, 4))
    xyxy[: n // 3] = np.round(xyxy[: n // 3])  # integral values: "12.0"
    if n:
        xyxy[0, 0] = 0.125  # a tie: half-even
    cid = rng.choice([0, 1, 2, 4], n)
    scores = rng.uniform(-0.2, 1.2, n) if with_scores else None
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    return offsets, xyxy, cid, scores


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=4),
    st.booleans(),
    st.sampled_from(["pixel", None]),
    st.integers(0, 4),
    st.integers(0, 6),
    st.sampled_from([1.0, 300.0, 1e6]),
    st.integers(0, 2**32 - 1),
)
def test_matches_json_dumps_of_rounded_dicts(
    counts, with_scores, domain, decimals, score_decimals, scale, seed
):
    offsets, xyxy, cid, scores = _case(np.random.default_rng(seed), counts, with_scores, scale)
    got = box_json(offsets, xyxy, cid, scores, LABELS, domain, decimals, score_decimals)
    assert got == reference.box_json(
        offsets, xyxy, cid, scores, LABELS, domain, decimals, score_decimals
    )


def test_known_text():
    text = box_json([0, 1, 1], [[2.0, 3.456, 12.0, 11.999]], [0], [0.875], {0: "a"})
    assert text == [
        '[{"box_caption": "a 0.88", "class_id": 0, "domain": "pixel", "position": '
        '{"maxX": 12.0, "maxY": 12.0, "minX": 2.0, "minY": 3.46}, "scores": '
        '{"score": 0.875}}]',
        "[]",
    ]


def test_class_ids_past_a_byte_lvis_sized():
    labels = {i: f"c{i}" for i in range(1203)}
    xyxy = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [0, 0, 1, 1]], np.float64)
    cid = np.array([1202, 256, 255])
    scores = np.array([0.5, 0.25, 0.125])
    got = box_json([0, 3], xyxy, cid, scores, labels)
    assert got == reference.box_json([0, 3], xyxy, cid, scores, labels, "pixel", 2, 4)
    assert '"box_caption": "c1202 0.50", "class_id": 1202' in got[0]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"class_id": [9]}, "class_id 9 has no entry"),
        ({"xyxy": [[0, 0, np.inf, 1]]}, "must be finite"),
        ({"offsets": [0, 2]}, "offsets must go from 0 to 1"),
        ({"decimals": 12}, r"decimals must be an int in \[0, 9\]"),
    ],
)
def test_bad_inputs_are_clear_errors(kwargs, match):
    args = {
        "offsets": [0, 1],
        "xyxy": [[0, 0, 1, 1]],
        "class_id": [0],
        "scores": [0.5],
        "class_labels": {0: "a"},
        **kwargs,
    }
    with pytest.raises(ValueError, match=match):
        box_json(**args)
