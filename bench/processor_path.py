"""The router's own work per request, without Envoy or gRPC: the processor's request-headers
and request-body phases (parse, decide, rewrite, mutations) on the keyword demo policy, and
with `--access-log` the request's access log entry too (what Envoy streams back after the
answer: health, outcome, budget settlement), built from the metadata the reply set. Each
stream carries Envoy's `traceparent`, as deploy/envoy's tracing sends it in the call's metadata.

    python bench/processor_path.py [--requests 3000] [--repeats 7] [--access-log] [--json OUT]

Runs in-process against whatever tree is on `sys.path`, so the same script measures two
commits: check one out in a worktree and run it there with this file, alternating, e.g.

    git worktree add /tmp/before <rev>
    for i in 1 2 3; do
      (cd /tmp/before && PYTHONPATH=. /path/to/.venv/bin/python /path/to/bench/processor_path.py)
      PYTHONPATH=. .venv/bin/python bench/processor_path.py
    done

Reports the median over repeats of microseconds per request, for an explicit model and `auto`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path
from typing import Any

from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.data.accesslog.v3.accesslog_pb2 import HTTPAccessLogEntry
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
)

from extproc.access_log import AccessLogService
from extproc.processor import Processor, StreamState
from meritorder.config import load_config
from meritorder.router import Router

POLICY = Path(__file__).resolve().parents[1] / "deploy" / "keywords.yaml"
TEXT = "Please summarize the trade-offs of the three designs in one paragraph for my manager."


def messages(model: str, request_id: int) -> tuple[ProcessingRequest, ProcessingRequest]:
    body = json.dumps(
        {"model": model, "max_tokens": 256, "messages": [{"role": "user", "content": TEXT}]}
    ).encode()
    return exchange(body, f"bench-{request_id}")


def exchange(body: bytes, request_id: str) -> tuple[ProcessingRequest, ProcessingRequest]:
    """What Envoy sends the processor for a chat request of `body`: its headers, then its body."""
    pairs = {
        ":method": "POST",
        ":path": "/v1/chat/completions",
        "content-type": "application/json",
        "content-length": str(len(body)),
        "x-request-id": request_id,
    }
    header_map = HeaderMap(
        headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
    )
    return (
        ProcessingRequest(request_headers=HttpHeaders(headers=header_map)),
        ProcessingRequest(request_body=HttpBody(body=body, end_of_stream=True)),
    )


def log_entry(request_id: int, model: str, reply: Any) -> HTTPAccessLogEntry:
    """The entry Envoy would stream for this answered request: a 200 from the routed model's
    cluster, with the dynamic metadata the processor's reply set."""
    entry = HTTPAccessLogEntry()
    entry.request.request_id = f"bench-{request_id}"
    entry.request.request_headers["x-meritorder-model"] = model
    entry.response.response_code.value = 200
    common = entry.common_properties
    common.upstream_cluster = f"mock-{model}"
    common.time_to_first_upstream_rx_byte.nanos = 900_000
    common.time_to_last_downstream_tx_byte.nanos = 1_200_000
    for namespace, value in reply.dynamic_metadata.fields.items():
        common.metadata.filter_metadata[namespace].CopyFrom(value.struct_value)
    return entry


def entry_for(request_id: int, reply: Any) -> HTTPAccessLogEntry:
    """`log_entry` for a routed reply, from the model its headers routed to."""
    routed = reply.request_body.response.header_mutation.set_headers
    chosen = next(h for h in routed if h.header.key == "x-meritorder-model")
    return log_entry(request_id, chosen.header.raw_value.decode(), reply)


# What Envoy's tracing puts in each ext_proc call's gRPC metadata (deploy/envoy traces every
# request), so the router's span continues Envoy's trace as it does when served.
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def stream_state() -> StreamState:
    state = StreamState()
    state.envoy_trace["traceparent"] = TRACEPARENT
    return state


async def run(
    processor: Processor, model: str, requests: int, log: AccessLogService | None = None
) -> float:
    """Microseconds per request of the router's own calls; making the bench's messages and
    entries is not counted."""
    exchanges = [messages(model, i) for i in range(requests)]
    spent = 0.0
    for index, (headers, body) in enumerate(exchanges):
        state = stream_state()
        started = time.perf_counter()
        await processor.process(state, headers)
        reply = await processor.process(state, body)
        spent += time.perf_counter() - started
        assert reply.WhichOneof("response") == "request_body", reply
        if log is not None:
            entry = entry_for(index, reply)
            started = time.perf_counter()
            await log.record(entry)
            spent += time.perf_counter() - started
    return spent / requests * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--access-log", action="store_true", help="settle each access log entry")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    router = Router(load_config(POLICY))
    processor = Processor(router)
    log = AccessLogService(router) if args.access_log else None
    results: dict[str, Any] = {}
    for model in ("small", "auto"):
        asyncio.run(run(processor, model, 200, log))  # warm up
        times = [
            asyncio.run(run(processor, model, args.requests, log)) for _ in range(args.repeats)
        ]
        results[model] = {"median_us": round(statistics.median(times), 1),
                          "min_us": round(min(times), 1)}  # fmt: skip
    print(json.dumps(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
