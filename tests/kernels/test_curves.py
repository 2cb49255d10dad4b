"""fastevalcb.kernels.curves against scikit-learn (the oracle) and its numpy twin."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import precision_recall_curve

from fastevalcb.kernels import curves
from tests.helpers import reference


def probabilities(seed: int, n: int = 200, c: int = 4):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 2
    logits[:, 0] += 1
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    p = np.round(p, 2).astype(np.float32)  # many scores on the edges, and ties
    labels = rng.integers(0, c, n)
    return p, labels


@pytest.mark.parametrize("seed", range(6))
def test_pr_curves_equal_sklearn_at_every_edge(seed):
    p, labels = probabilities(seed)
    targets = labels[:, None] == np.arange(p.shape[1])[None, :]
    half = len(p) // 2  # two batches add up
    out = curves.score_histograms(p[:half], targets[:half])
    pos, neg = curves.score_histograms(p[half:], targets[half:], out=out)
    precision, recall = curves.pr_curves(pos, neg)
    for k in range(p.shape[1]):
        sk_p, sk_r, sk_t = precision_recall_curve(targets[:, k], p[:, k])
        for j, edge in enumerate(curves.PR_EDGES):
            at = np.flatnonzero(
                sk_t.astype(np.float64) >= edge
            )  # as the kernel: in float64 (numpy 1 would compare in float32)
            if len(at) == 0:
                assert np.isnan(precision[k, j])
                continue
            i = at[0]  # sklearn's point at its first threshold >= edge
            assert precision[k, j] == pytest.approx(sk_p[i])
            assert recall[k, j] == pytest.approx(sk_r[i])


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31))
def test_histograms_and_calibration_match_the_twins(seed):
    p, labels = probabilities(seed, n=50)
    p[seed % 50, 1] = np.nan
    targets = labels[:, None] == np.arange(p.shape[1])[None, :]
    for got, want in zip(
        curves.score_histograms(p, targets), reference.score_histograms(p, targets)
    ):
        np.testing.assert_array_equal(got, want)
    for got, want in zip(
        curves.score_histograms(p, labels),  # class ids: the same counts
        reference.score_histograms(p, targets),
    ):
        np.testing.assert_array_equal(got, want)
    edges = np.array([0.0, 0.05, 0.3, 0.31, 0.9])  # uneven: the guess is corrected
    for got, want in zip(
        curves.score_histograms(p, targets, edges), reference.score_histograms(p, targets, edges)
    ):
        np.testing.assert_array_equal(got, want)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == labels
    for got, want in zip(
        curves.calibration_bins(conf, correct), reference.calibration_bins(conf, correct)
    ):
        np.testing.assert_allclose(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_calibration_equals_sklearn_and_ece_by_definition(seed):
    p, labels = probabilities(seed)
    conf, correct = p.max(axis=1), p.argmax(axis=1) == labels
    count, conf_sum, correct_sum = curves.calibration_bins(conf, correct, 10)
    prob_true, prob_pred = calibration_curve(correct, conf, n_bins=10, strategy="uniform")
    seen = count > 0
    np.testing.assert_allclose(correct_sum[seen] / count[seen], prob_true)
    np.testing.assert_allclose(conf_sum[seen] / count[seen], prob_pred, rtol=1e-6)
    ece = sum(n / len(conf) * abs(a - c) for n, a, c in zip(count[seen], prob_true, prob_pred))
    assert curves.expected_calibration_error(count, conf_sum, correct_sum) == pytest.approx(
        ece, abs=1e-6
    )


def test_empty_gives_nan():
    count, conf_sum, correct_sum = curves.calibration_bins(np.zeros(0), np.zeros(0, bool))
    assert np.isnan(curves.expected_calibration_error(count, conf_sum, correct_sum))
    precision, recall = curves.pr_curves(
        *curves.score_histograms(np.zeros((0, 2)), np.zeros((0, 2), bool))
    )
    assert np.isnan(precision).all() and np.isnan(recall).all()
