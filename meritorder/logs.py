"""structlog setup: JSON lines for machines, a readable console format for people."""

from __future__ import annotations

import logging
import sys

import structlog
from opentelemetry import trace


def configure_logging(*, json_logs: bool | None = None, level: str = "INFO") -> None:
    """JSON when stderr is not a terminal (or when asked), console rendering otherwise."""
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            _add_trace_ids,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=_StderrLogger,
        cache_logger_on_first_use=False,  # tools and tests may reconfigure (or capture) logging
    )


class _StderrLogger:
    """Writes each line to the *current* sys.stderr (which tests and tools may swap)."""

    def __init__(self, *_: object) -> None:
        pass

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


def _add_trace_ids(
    _logger: object, _method: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    """Put the current span's trace and span ids on the line, to find it in Jaeger."""
    context = trace.get_current_span().get_span_context()
    if context.is_valid:
        event["trace_id"] = format(context.trace_id, "032x")
        event["span_id"] = format(context.span_id, "016x")
    return event
