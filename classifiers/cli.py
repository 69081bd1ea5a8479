"""`meritorder classify`: JSONL in, one JSONL line of signals (or of an error) per input line.

Input lines are `{"id": ..., "text": "..."}` or `{"id": ..., "messages": [chat messages]}`.
Lines are classified in batches for throughput; the output keeps the input's order. A bad line
gets `{"id": ..., "line": N, "error": "..."}` (N: its line number) and the lines after it are
still classified, or the run stops there (`stop_on_error`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TextIO

from classifiers.engine import ClassifyInput, InvalidInput, Job
from classifiers.signals import Signals


class BatchClassifier(Protocol):
    def classify_batch(self, inputs: list[ClassifyInput]) -> list[Signals]: ...


# Called with (line number, error) for each bad line.
OnBadLine = Callable[[int, str], None]


@dataclass(frozen=True, slots=True)
class _Line:
    id: Any
    value: ClassifyInput | None = None
    error: str | None = None
    number: int = 0


def run_classify(
    input: TextIO,
    output: TextIO,
    engine: BatchClassifier,
    *,
    batch_size: int = 32,
    stop_on_error: bool = False,
    on_bad: OnBadLine | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Classify every JSONL line of `input` into `output`; 0 if every line worked, else 1.

    `latency_ms` is the wall time of the batched inference call that produced the line. With
    `stop_on_error`, nothing after the first bad line is written. `progress` gets the count of
    lines each batch finished.
    """
    failed = False
    for batch in _batches(_parse(input), batch_size):
        for line in _classify(batch, engine):
            if "error" in line:
                failed = True
                if on_bad is not None:
                    on_bad(line["line"], line["error"])
            output.write(json.dumps(line, ensure_ascii=False) + "\n")
            if failed and stop_on_error:
                output.flush()
                return 1
        output.flush()
        if progress is not None:
            progress(len(batch))
    return 1 if failed else 0


def parse_line(raw: str) -> _Line:
    """One input line, validated; errors name the field and say what is expected."""
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return _Line(None, error=f"invalid JSON at column {exc.colno}: {exc.msg}")
    if not isinstance(obj, dict):
        return _Line(None, error=f"each line must be a JSON object, not {type(obj).__name__}")
    line_id = obj.get("id")
    has_text, has_messages = "text" in obj, "messages" in obj
    if has_text == has_messages:
        which = "both" if has_text else "neither"
        return _Line(line_id, error=f"the line has {which} 'text' and 'messages'; send one")
    if has_text:
        text = obj["text"]
        if not isinstance(text, str):
            return _Line(line_id, error=f"'text' must be a string, not {type(text).__name__}")
        return _Line(line_id, text)
    messages = obj["messages"]
    if not isinstance(messages, list):
        return _Line(line_id, error=f"'messages' must be a list, not {type(messages).__name__}")
    try:
        Job.of(messages)
    except InvalidInput as exc:
        return _Line(line_id, error=str(exc))
    return _Line(line_id, messages)


def _parse(lines: Iterable[str]) -> Iterator[_Line]:
    for number, raw in enumerate(lines, 1):
        if raw.strip():
            line = parse_line(raw)
            yield _Line(line.id, line.value, line.error, number)


def _batches(lines: Iterator[_Line], size: int) -> Iterator[list[_Line]]:
    batch: list[_Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _classify(batch: list[_Line], engine: BatchClassifier) -> list[dict[str, Any]]:
    values = [line.value for line in batch if line.value is not None]
    started = time.perf_counter()
    try:
        signals: list[Signals | Exception] = list(engine.classify_batch(values))
    except Exception:  # find the line at fault: classify this batch one line at a time
        signals = [_one(engine, value) for value in values]
    latency_ms = round((time.perf_counter() - started) * 1000, 3)
    results = iter(signals)
    out: list[dict[str, Any]] = []
    for line in batch:
        result = line.error if line.value is None else next(results)
        if isinstance(result, Signals):
            out.append({"id": line.id, **result.to_json(), "latency_ms": latency_ms})
        else:
            out.append({"id": line.id, "line": line.number, "error": str(result)})
    return out


def _one(engine: BatchClassifier, value: ClassifyInput) -> Signals | Exception:
    try:
        return engine.classify_batch([value])[0]
    except Exception as exc:
        return exc
