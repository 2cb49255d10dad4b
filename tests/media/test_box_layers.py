"""Box layers rendered as JSON text: the same JSON wandb writes from the stock dicts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import wandb
from hypothesis import given, settings
from hypothesis import strategies as st

from fastevalcb.media import build_images
from fastevalcb.media.boxes import box_data_json, box_payloads
from fastevalcb.tables import ColumnarTable, JSONText, add_table
from fastevalcb.types import PackedDetections

LABELS = {0: "cat", 1: 'say "hi"', 2: "naïve \\ tab\t"}


def _packed(rng, counts, with_scores):
    n = int(sum(counts))
    xy = rng.uniform(-5, 60, (n, 2))
    xyxy = np.concatenate([xy, xy + rng.uniform(0, 30, (n, 2))], 1)
    return PackedDetections(
        np.concatenate([[0], np.cumsum(counts)]),
        xyxy,
        rng.integers(0, 3, n),
        rng.uniform(0, 1, n) if with_scores else None,
    )


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(0, 6), min_size=1, max_size=5),
    st.booleans(),
    st.sampled_from(["pixel", None]),
    st.integers(0, 2**32 - 1),
)
def test_text_is_json_dumps_of_the_stock_box_data(counts, with_scores, domain, seed):
    dets = _packed(np.random.default_rng(seed), counts, with_scores)
    texts = box_data_json(dets, LABELS, domain)
    payloads = box_payloads(dets, LABELS, domain)
    for text, payload in zip(texts, payloads):
        assert isinstance(text, JSONText)
        assert text.text == json.dumps(payload["box_data"], sort_keys=True)
        assert list(text) == payload["box_data"]  # reads back as the stock list
        assert text.score_keys == ({"score"} if with_scores and payload["box_data"] else set())


def test_non_finite_boxes_are_refused():
    dets = PackedDetections(np.array([0, 1]), [[0, 0, np.nan, 4]], [0], [0.5])
    with pytest.raises(ValueError, match="must be finite"):
        box_data_json(dets, LABELS)


@pytest.mark.slow
def test_table_with_text_layers_writes_what_wandb_writes_from_dicts(wandb_offline):
    rng = np.random.default_rng(0)
    base = build_images(rng.integers(0, 255, (3, 16, 16, 3), dtype=np.uint8))
    gt = _packed(rng, [1, 0, 2], with_scores=False)
    pred = _packed(rng, [3, 2, 0], with_scores=True)

    def table(table_only):
        images = build_images(
            base,
            boxes={"ground_truth": gt, "predictions": pred},
            class_labels=LABELS,
            table_only=table_only,
        )
        t = ColumnarTable(["id", "image"])
        t.add_columns({"id": [0, 1, 2], "image": images})
        return t

    fast_entry = add_table(wandb.Artifact("fast", "x"), table(True), "t")
    stock_entry = wandb.Artifact("stock", "x").add(table(False), "t")
    fast, stock = (open(e.local_path).read() for e in (fast_entry, stock_entry))
    assert json.loads(fast) == json.loads(stock)  # ours writes "data" first
    assert json.loads(fast)["data"][0][1]["boxes"]["predictions"][0]["scores"]
    # Without add_table's splice, text layers still serialize correctly (decoded).
    plain = wandb.Artifact("plain", "x").add(table(True), "t")
    assert json.loads(open(plain.local_path).read()) == json.loads(stock)
