"""fastevalcb.kernels.classification vs its numpy twin in tests/reference.py."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fastevalcb import kernels
from tests.helpers import reference

SETTINGS = settings(max_examples=80, deadline=None)
finite = st.floats(-50, 50, width=32)
special = st.one_of(finite, st.sampled_from([np.nan, np.inf, -np.inf]))


def logits_strategy(elements=finite, min_classes=1):
    return st.tuples(st.integers(0, 6), st.integers(min_classes, 12)).flatmap(
        lambda s: arrays(np.float32, s, elements=elements)
    )


@SETTINGS
@given(logits_strategy(special, min_classes=0))
def test_softmax_matches_reference(x):
    np.testing.assert_allclose(kernels.softmax(x), reference.softmax(x), rtol=2e-6, atol=1e-7)


@SETTINGS
@given(logits_strategy())
def test_softmax_rows_sum_to_one(x):
    np.testing.assert_allclose(kernels.softmax(x).sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
@SETTINGS
@given(logits_strategy(st.one_of(st.sampled_from([0.0, 1.0, np.nan]), finite)), st.integers(1, 12))
def test_topk_matches_reference_with_ties_and_nan(x, k):
    k = min(k, x.shape[1])
    ids, vals = kernels.topk(x, k)
    rids, rvals = reference.topk(x, k)
    np.testing.assert_array_equal(ids, rids)
    np.testing.assert_array_equal(vals, rvals)


@pytest.mark.slow
@SETTINGS
@given(logits_strategy(), st.data())
def test_classification_summary_matches_reference(x, data):
    labels = data.draw(arrays(np.int64, len(x), elements=st.integers(0, x.shape[1] - 1)))
    k = data.draw(st.integers(1, x.shape[1]))
    got = kernels.classification_summary(x, labels, k)
    # softmax agrees to ~1 ulp (checked above); rank the kernel's probabilities with the
    # reference so near-ties one ulp apart cannot flip the order between the two.
    want = reference.classification_summary(kernels.softmax(x), labels, k, from_logits=False)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_array_equal(got[4], want[4])


def test_summary_from_probs_and_without_labels():
    p = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], np.float32)
    pred, conf, ids, vals, correct = kernels.classification_summary(p, None, 2, from_logits=False)
    assert pred.tolist() == [1, 0] and conf.tolist() == pytest.approx([0.7, 0.5])
    assert ids.tolist() == [[1, 2], [0, 1]] and not correct.any()


@pytest.mark.parametrize("bad", [3, -1, 7])
def test_unknown_label_raises_naming_id_and_range(bad):
    with pytest.raises(ValueError, match=rf"unknown class id {bad}.*\[0, 3\)"):
        kernels.classification_summary(np.zeros((2, 3)), [0, bad])


def test_shape_errors_state_expected_and_got():
    with pytest.raises(ValueError, match=r"logits must have shape \(N, N\), got \(3,\)"):
        kernels.softmax(np.zeros(3))
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        kernels.topk(np.zeros((2, 3)), 4)
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\), got \(3,\)"):
        kernels.classification_summary(np.zeros((2, 3)), [0, 1, 2])


# ---------------------------------------------------------------- sigmoid heads
@SETTINGS
@given(
    logits_strategy(
        st.one_of(st.floats(-200, 200, width=32), st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
    )
)
def test_sigmoid_matches_reference_without_overflow(x):
    got = kernels.sigmoid(x)
    np.testing.assert_allclose(got, reference.sigmoid(x), rtol=2e-6, atol=1e-7)
    finite = got[~np.isnan(got)]
    assert ((finite >= 0) & (finite <= 1)).all()


@SETTINGS
@given(
    st.integers(0, 8).flatmap(lambda n: arrays(np.float32, (n, 1), elements=finite)), st.booleans()
)
def test_binary_probabilities_match_reference(x, from_logits):
    if not from_logits:
        x = np.abs(x) / 50
    got = kernels.binary_probabilities(x, from_logits)
    np.testing.assert_allclose(
        got, reference.binary_probabilities(x, from_logits), rtol=2e-6, atol=1e-7
    )
    np.testing.assert_allclose(got.sum(1), 1.0, rtol=1e-6)
    assert kernels.binary_probabilities(x[:, 0], from_logits).shape == (len(x), 2)


def test_one_unit_head_ties_predict_class_zero_like_keras_binary_accuracy():
    probs = kernels.binary_probabilities([[0.0], [1e-3], [-1e-3]])  # logits
    pred, conf, *_ = kernels.classification_summary(probs, None, 1, from_logits=False)
    assert pred.tolist() == [0, 1, 0]
    np.testing.assert_allclose(
        conf, [0.5, 1 / (1 + np.exp(-1e-3)), 1 / (1 + np.exp(-1e-3))], rtol=1e-6
    )


@pytest.mark.slow
@SETTINGS
@given(
    logits_strategy(st.one_of(finite, st.sampled_from([0.0, np.nan]))),
    st.data(),
    st.sampled_from([0.5, 0.3, 0.9]),
    st.booleans(),
)
def test_multilabel_summary_matches_reference(x, data, threshold, from_logits):
    labels = data.draw(arrays(np.bool_, x.shape))
    if not from_logits:
        x = np.abs(np.nan_to_num(x)) / 50
    got = kernels.multilabel_summary(x, labels, threshold, from_logits)
    want = reference.multilabel_summary(x, labels, threshold, from_logits)
    np.testing.assert_allclose(got[0], want[0], rtol=2e-6, atol=1e-7)
    for g, w in zip(got[1:], want[1:]):
        np.testing.assert_array_equal(g, w)
    no_labels = kernels.multilabel_summary(x, None, threshold, from_logits)
    np.testing.assert_array_equal(no_labels[1], got[1])
    assert not no_labels[2].any() and not no_labels[4].any()


def test_multilabel_summary_by_hand():
    probs = np.array([[0.9, 0.6, 0.1], [0.2, 0.5, 0.51]], np.float32)
    labels = np.array([[1, 0, 1], [0, 0, 0]])
    _, pred, hits, num_pred, num_true = kernels.multilabel_summary(probs, labels, from_logits=False)
    assert pred.tolist() == [[True, True, False], [False, False, True]]  # 0.5 is not > 0.5
    assert hits.tolist() == [1, 0] and num_pred.tolist() == [2, 1] and num_true.tolist() == [2, 0]
    with pytest.raises(ValueError, match=r"labels must have shape \(2, 3\)"):
        kernels.multilabel_summary(probs, labels[:, :2])
