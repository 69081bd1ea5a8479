"""The signal cache in the served router: a conversation's second turn, sent through the real
Envoy with the openai SDK, reads its first turn's rows from the cache."""

from __future__ import annotations

import httpx
import openai
from devstack import Stack


def scrape(stack: Stack, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{stack.ports.metrics}/metrics").text
    return sum(float(line.split(" ")[1]) for line in text.splitlines() if line.startswith(name))


def test_the_second_turn_of_a_conversation_reads_the_first_from_the_cache(
    stack: Stack, client: openai.OpenAI
) -> None:
    system = {"role": "system", "content": "You are a careful tutor. Explain every step you take."}
    first = {"role": "user", "content": "What does the derivative of x squared tell us about it?"}
    hits, misses = (scrape(stack, f"meritorder_signal_cache_{k}_total") for k in ("hits", "misses"))
    client.chat.completions.create(model="auto", messages=[system, first])
    after_first = scrape(stack, "meritorder_signal_cache_hits_total")
    history = [
        system,
        first,
        {"role": "assistant", "content": "It gives the slope of the curve at each point."},
        {"role": "user", "content": "And what is the slope at x equal to three?"},
    ]
    client.chat.completions.create(model="auto", messages=history)
    assert scrape(stack, "meritorder_signal_cache_misses_total") > misses
    assert scrape(stack, "meritorder_signal_cache_hits_total") > after_first >= hits
