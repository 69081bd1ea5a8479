"""What the specs share: usage naming and the SSE usage parser."""

from __future__ import annotations

import json

import pytest

from meritorder.endpoints import BY_API, Usage, usage_tokens

STREAM = (
    b'data: {"choices":[{"delta":{"content":"h\xc3\xa9"}}],"usage":null}\n\n'
    b": a comment\r\n\r\n"
    b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
    b"data: [DONE]\n\n"
)


@pytest.mark.parametrize(
    ("usage", "tokens"),
    [
        ({"prompt_tokens": 7, "completion_tokens": 3}, (7, 3)),
        ({"input_tokens": 7, "output_tokens": 3}, (7, 3)),
        ({"prompt_tokens": 7, "total_tokens": 7}, (7, 0)),  # embeddings generate none
        ({"prompt_tokens": 7}, (7, None)),
        ({"prompt_tokens": -1, "completion_tokens": True}, (None, None)),
        (None, (None, None)),
        ("7", (None, None)),
    ],
)
def test_usage_is_read_in_either_naming(usage: object, tokens: tuple[object, object]) -> None:
    assert usage_tokens(usage) == tokens


def test_stream_usage_survives_every_chunk_boundary() -> None:
    for cut in range(1, len(STREAM)):
        parser = BY_API["chat"].stream_usage()
        parser.feed(STREAM[:cut])
        parser.feed(STREAM[cut:])
        assert parser.finish() == Usage(7, 3), cut
        assert parser.skipped == 0


def test_stream_usage_byte_by_byte_and_a_last_event_without_its_blank_line() -> None:
    parser = BY_API["chat"].stream_usage()
    for byte in STREAM.removesuffix(b"data: [DONE]\n\n").rstrip(b"\n"):
        parser.feed(bytes([byte]))
    assert parser.finish() == Usage(7, 3)


def test_an_unreadable_event_is_counted_and_the_rest_still_read() -> None:
    parser = BY_API["chat"].stream_usage()
    parser.feed(b"data: {not json\n\n" + STREAM)
    assert (parser.finish(), parser.skipped) == (Usage(7, 3), 1)


def test_an_event_longer_than_the_limit_is_dropped_not_kept() -> None:
    parser = BY_API["chat"].stream_usage()
    parser.MAX_EVENT_BYTES = 64
    parser.feed(b"data: " + json.dumps({"x": "y" * 100}).encode())
    assert parser.skipped == 1
    parser.feed(b"\n\n" + STREAM)
    assert parser.finish() == Usage(7, 3)
