"""Temperature scaling and the expected calibration error (classifiers/calibration.py)."""

from __future__ import annotations

import numpy as np
import pytest

from classifiers import calibration


def test_sigmoid_scaling_divides_the_logit_by_the_temperature() -> None:
    p = np.array([0.1, 0.5, 0.9, 0.999], dtype=np.float32)
    got = calibration.sigmoid_scaled(p, 2.0)
    logit = np.log(p / (1 - p)) / 2.0
    np.testing.assert_allclose(got, 1 / (1 + np.exp(-logit)), rtol=1e-5)
    assert got[1] == pytest.approx(0.5)
    assert got[3] < p[3]  # a temperature above 1 softens a confident score


def test_softmax_scaling_keeps_the_ranking_and_sums_to_one() -> None:
    p = np.array([[0.7, 0.2, 0.1], [0.05, 0.05, 0.9]], dtype=np.float32)
    got = calibration.softmax_scaled(p, 3.0)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)
    assert (got.argmax(axis=1) == p.argmax(axis=1)).all()
    assert (got.max(axis=1) < p.max(axis=1)).all()
    np.testing.assert_allclose(calibration.softmax_scaled(p, 1.0), p, rtol=1e-5)


def test_apply_scales_only_the_heads_it_is_given_and_tolerates_absent_outputs() -> None:
    outputs = {"attack_prob": np.array([0.9]), "domain_probs": np.array([[0.8, 0.2]])}
    got = calibration.apply(outputs, {"prompt_attack": 2.0, "harmful": 3.0})
    expected = calibration.sigmoid_scaled(np.array([0.9]), 2.0)[0]
    assert got["attack_prob"][0] == pytest.approx(expected)
    np.testing.assert_allclose(got["domain_probs"], outputs["domain_probs"])
    assert "harmful_prob" not in got


def test_ece_is_near_zero_for_calibrated_scores_and_large_for_overconfident_ones() -> None:
    rng = np.random.default_rng(0)
    conf = rng.uniform(0, 1, 20_000)
    calibrated = rng.uniform(0, 1, conf.size) < conf
    assert calibration.expected_calibration_error(conf, calibrated) < 0.02
    overconfident = np.where(conf > 0.5, 0.99, 0.01)
    assert calibration.expected_calibration_error(overconfident, calibrated) > 0.2
