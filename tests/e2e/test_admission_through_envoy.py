"""Admission control through the real Envoy and the shipped model: under a burst that the
classifier cannot read within its budget, every answer says whether its signals were read, and
the router's counters match what the answers say (no silent fallback)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from devstack import Stack

from tests.helpers import stack_serving

pytestmark = pytest.mark.e2e

POLICY = Path(__file__).parent / "policies" / "admission.yaml"
BURST = 48

stack = stack_serving(POLICY)


def send(stack: Stack, n: int) -> httpx.Response:
    # Each prompt its own: no cached row, no row shared within a batch.
    prompt = f"Request {n}: how do I read a csv file in python and sum its third column?"
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    return httpx.post(f"{stack.base_url}/v1/chat/completions", json=body, timeout=30)


def degraded_by_cause(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{stack.ports.metrics}/metrics").text
    counts: dict[str, float] = {}
    for labels, value in re.findall(
        r"^meritorder_degraded_decisions_total\{(.*)\} (\S+)$", text, re.M
    ):
        cause = re.search(r'cause="([^"]*)"', labels)
        assert cause is not None
        counts[cause[1]] = counts.get(cause[1], 0.0) + float(value)
    return counts


def fallbacks(stack: Stack) -> float:
    text = httpx.get(f"http://127.0.0.1:{stack.ports.metrics}/metrics").text
    return sum(
        float(v) for v in re.findall(r"^meritorder_fallbacks_total\{.*\} (\S+)$", text, re.M)
    )


def test_under_a_burst_every_answer_says_whether_its_signals_were_read_and_is_counted(
    stack: Stack,
) -> None:
    first = send(stack, 0)  # times the classifier's first batch: admission has an estimate
    with ThreadPoolExecutor(max_workers=BURST) as pool:
        burst = list(pool.map(lambda n: send(stack, n), range(1, BURST + 1)))
    notes: dict[str, int] = {}
    for response in [first, *burst]:
        reason = response.headers["x-meritorder-reason"]
        assert "fallback=" not in reason, reason
        missing = re.search(r"classifier=([^;]*)", reason)
        if missing is None:  # read in time: the policy decided on the attack score
            assert response.status_code == 200 and "degraded=" not in reason, reason
            continue
        assert missing[1] in ("busy", "timeout"), reason
        assert "degraded=signals_skipped" in reason, reason
        assert response.headers["x-meritorder-decision"] == "code"  # the keyword still decides
        notes[missing[1]] = notes.get(missing[1], 0) + 1
    assert notes.get("busy", 0) > 0, notes  # a 1 ms budget against a busy classifier
    assert degraded_by_cause(stack) == {cause: float(n) for cause, n in notes.items()}
    assert fallbacks(stack) == 0
