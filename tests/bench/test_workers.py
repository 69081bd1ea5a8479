"""bench/workers.py's load: a prompt of its own for every connection, so that neither the
signal cache nor the batch's shared rows answer for the encoder."""

from __future__ import annotations

import json

from bench.workers import bodies, shares


def test_every_connection_sends_its_own_auto_prompt() -> None:
    sent = [json.loads(body) for body in bodies(64)]

    assert {body["model"] for body in sent} == {"auto"}
    prompts = [body["messages"][-1]["content"] for body in sent]
    assert len(set(prompts)) == 64


def test_shares_count_fallback_and_degraded_decisions() -> None:
    decisions = {"default": 6, "default;fallback=timeout": 3, "code;classifier=degraded": 1}

    assert shares(decisions) == {"fallback": 0.3, "degraded": 0.1}
