"""Temperature scaling: the graph's probabilities made calibrated, one temperature per head.

A head's temperature `T` is fitted on held-out calibration rows (`classifiers/training/
calibrate.py`) and shipped in `signals.json` `temperatures`; the runtime and the evaluators both
call `apply` on the graph's raw outputs, so every threshold in `signals.json` is on the
calibrated scale. `T > 1` softens an overconfident head; `T = 1` (or no entry) leaves it as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float32]

# The graph's output for each calibrated head, and whether it is a softmax over its last axis.
HEADS: dict[str, tuple[str, bool]] = {
    "domain": ("domain_probs", True),
    "prompt_attack": ("attack_prob", False),
    "harmful": ("harmful_prob", False),
    "difficulty": ("difficulty_prob", False),
    "pii": ("pii_probs", True),
}

_EPS = 1e-7


def sigmoid_scaled(probs: NDArray[np.floating], temperature: float) -> FloatArray:
    """sigmoid(logit(p) / T), elementwise."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    logits = np.log(p) - np.log1p(-p)
    return (1.0 / (1.0 + np.exp(-logits / temperature))).astype(np.float32)


def softmax_scaled(probs: NDArray[np.floating], temperature: float) -> FloatArray:
    """softmax(log(p) / T) over the last axis: the same as dividing the logits by T."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return np.asarray(e / e.sum(axis=-1, keepdims=True), dtype=np.float32)


def scaled(head: str, probs: NDArray[np.floating], temperature: float) -> FloatArray:
    """`probs` of `head` (a key of HEADS) at `temperature`."""
    if temperature == 1.0:
        return np.asarray(probs, dtype=np.float32)
    _, softmax = HEADS[head]
    return (softmax_scaled if softmax else sigmoid_scaled)(probs, temperature)


def apply(
    outputs: Mapping[str, NDArray[np.floating]], temperatures: Mapping[str, float]
) -> dict[str, FloatArray]:
    """The graph's outputs (by output name) with each head's temperature applied; outputs of
    heads without a temperature, or absent from the graph, pass through."""
    out = {name: np.asarray(value, dtype=np.float32) for name, value in outputs.items()}
    for head, temperature in temperatures.items():
        name, _ = HEADS[head]
        if name in out:
            out[name] = scaled(head, out[name], temperature)
    return out


def expected_calibration_error(
    confidence: NDArray[np.floating], correct: NDArray[np.floating], bins: int = 15
) -> float:
    """ECE with equal-width bins: sum over bins of |accuracy - mean confidence| x bin share.

    For a binary head pass P(positive) as `confidence` and the label as `correct` (the
    reliability of the positive-class probability); for a softmax head pass the top probability
    and whether the top label was right."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    if conf.size == 0:
        return float("nan")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = which == b
        if m.any():
            total += m.mean() * abs(hit[m].mean() - conf[m].mean())
    return float(total)
