"""Fitting a head's temperature (classifiers/training/calibrate.py) on synthetic scores."""

from __future__ import annotations

import numpy as np

from classifiers import calibration
from classifiers.training.calibrate import _binary_nll, _softmax_nll, fit_temperature


def test_fit_recovers_the_temperature_that_made_a_binary_head_overconfident() -> None:
    rng = np.random.default_rng(1)
    logit = rng.normal(0, 2, 30_000)
    y = (rng.uniform(size=logit.size) < 1 / (1 + np.exp(-logit))).astype(float)
    overconfident = 1 / (1 + np.exp(-3.0 * logit))  # logits three times too large
    t = fit_temperature(_binary_nll(overconfident, y))
    assert 2.7 < t < 3.3
    before = calibration.expected_calibration_error(overconfident, y)
    after = calibration.expected_calibration_error(calibration.sigmoid_scaled(overconfident, t), y)
    assert after < before / 3


def test_fit_leaves_a_calibrated_softmax_head_near_one() -> None:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1.5, (20_000, 4))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = np.array([rng.choice(4, p=row) for row in p])
    assert 0.9 < fit_temperature(_softmax_nll(p, y)) < 1.1
