"""`run_classify`: the JSONL contract of `meritorder classify`."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from classifiers.cli import run_classify
from classifiers.engine import ClassifyInput, SignalEngine
from classifiers.signals import Signals


def classify(engine: Any, *lines: str, batch_size: int = 32) -> tuple[int, list[dict[str, Any]]]:
    output = io.StringIO()
    code = run_classify(io.StringIO("\n".join(lines) + "\n"), output, engine, batch_size=batch_size)
    return code, [json.loads(line) for line in output.getvalue().splitlines()]


def test_text_and_messages_lines_give_the_contract_fields(engine: SignalEngine) -> None:
    code, out = classify(
        engine,
        json.dumps({"id": "a", "text": "mail alice at a@example.com"}),
        json.dumps({"id": 7, "messages": [{"role": "user", "content": "call bob"}]}),
    )
    assert code == 0
    assert set(out[0]) == {
        "id",
        "domain",
        "prompt_attack",
        "harmful",
        "pii",
        "difficulty",
        "tokens",
        "latency_ms",
    }
    assert out[0]["harmful"] is None  # the tiny model has no harm head
    assert out[0]["id"] == "a" and set(out[0]["domain"]) == {"label", "scores", "confidence"}
    assert set(out[0]["prompt_attack"]) == {"score", "flagged", "read", "by"}
    assert out[0]["pii"] == [
        {"type": "PERSON", "start": 5, "end": 10, "score": out[0]["pii"][0]["score"]},
        {"type": "EMAIL_ADDRESS", "start": 14, "end": 27, "score": 0.95},
    ]
    assert out[1]["id"] == 7
    assert [(p["type"], p["start"], p["end"], p["message"]) for p in out[1]["pii"]] == [
        ("PERSON", 5, 8, 0)
    ]


def test_bad_lines_report_an_error_and_the_rest_is_still_classified(engine: SignalEngine) -> None:
    code, out = classify(
        engine,
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"id": "no-input"}),
        json.dumps({"id": "both", "text": "x", "messages": []}),
        json.dumps({"id": "int-text", "text": 5}),
        json.dumps({"id": "str-messages", "messages": "hello"}),
        json.dumps({"id": "bad-message", "messages": [{"role": "user", "content": 3}]}),
        json.dumps({"id": "ok", "text": "hello world"}),
    )
    assert code == 1
    assert [line["id"] for line in out] == [
        None, None, "no-input", "both", "int-text", "str-messages", "bad-message", "ok"
    ]  # fmt: skip
    errors = [line["error"] for line in out[:-1]]
    assert errors[0].startswith("invalid JSON")
    assert "JSON object" in errors[1]
    assert "neither 'text' and 'messages'" in errors[2]
    assert "both 'text' and 'messages'" in errors[3]
    assert "'text' must be a string" in errors[4]
    assert "'messages' must be a list" in errors[5]
    assert "messages[0].content must be a string" in errors[6]
    assert "error" not in out[-1] and out[-1]["tokens"] == 2


def test_output_keeps_input_order_across_batches(engine: SignalEngine) -> None:
    lines = [json.dumps({"id": i, "text": "the cat " * (i % 5 + 1)}) for i in range(23)]
    lines.insert(5, "oops")
    code, out = classify(engine, *lines, "", batch_size=4)
    assert code == 1  # the "oops" line
    assert [line["id"] for line in out] == [*range(5), None, *range(5, 23)]
    assert [line["tokens"] for line in out if "tokens" in line] == [
        2 * (i % 5 + 1) for i in range(23)
    ]


class _FailsOnBob:
    """Fails any batch that holds the text "bob", as a broken input would."""

    def classify_batch(self, inputs: Sequence[ClassifyInput]) -> list[Signals]:
        if "bob" in inputs:
            raise RuntimeError("cannot classify bob")
        return [self.engine.classify_batch([value])[0] for value in inputs]

    def __init__(self, engine: SignalEngine) -> None:
        self.engine = engine


def test_a_line_that_breaks_its_batch_fails_alone(engine: SignalEngine) -> None:
    code, out = classify(
        _FailsOnBob(engine),
        json.dumps({"id": 1, "text": "alice"}),
        json.dumps({"id": 2, "text": "bob"}),
        json.dumps({"id": 3, "text": "the cat"}),
    )
    assert code == 1
    assert [("error" in line) for line in out] == [False, True, False]
    assert out[1] == {"id": 2, "line": 2, "error": "cannot classify bob"}
