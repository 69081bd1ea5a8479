"""Instructions per request of the router's own work, counted by valgrind: repeatable on a noisy
machine, where timings of a few hundred microseconds are not.

    python bench/path_instructions.py [--tree DIR] [--model small] [--grpc] [--json OUT]

Counts, with `valgrind --tool=callgrind` (Debian's `valgrind`), the instructions of the
processor's two request phases (as `bench/processor_path.py` drives them, keyword demo policy),
and of settling each request's access log entry (`AccessLogService.record`). Each phase is the
difference between a run of 400 and a run of 100 requests, divided by 300, so start-up and
imports cancel out; hash randomization is fixed (PYTHONHASHSEED=0). `--tree` measures another
checkout (e.g. `git worktree add --detach /tmp/before <rev>`) with this script's driver and this
repo's virtualenv. About a minute per phase and tree on two cores.

`--grpc` counts the whole router process instead: `serve` (keyword demo policy, no classifier)
runs under valgrind, and this script, outside it, plays Envoy over real gRPC: an ext_proc stream
per request (headers, then body, with Envoy's `traceparent` in the call's metadata) and the
access log stream, its entries in batches of 50 as Envoy flushes them. The figure is the
router's instructions per request, grpc's C core and its Python glue included (the difference of
a 100- and a 400-request run, divided by 300). A few minutes per tree.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PHASES = {"processor": 0, "processor+entry": 2, "processor+entry+record": 1}
VALGRIND = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]


def counted_env(tree: Path) -> dict[str, str]:
    """The environment of a counted run: `tree` on the path, hash randomization fixed."""
    return {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree)}


def collected(valgrind_output: str) -> int | None:
    """The instruction count valgrind printed at exit, if it did."""
    found = re.search(r"Collected : (\d+)", valgrind_output)
    return int(found.group(1)) if found else None


def _driver() -> Any:
    """This repo's `bench/processor_path.py` (its messages and entries), whatever the tree."""
    spec = importlib.util.spec_from_file_location(
        "processor_path", REPO / "bench" / "processor_path.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child(model: str, requests: int, log_mode: int) -> None:
    """Run inside valgrind, in the tree being measured: 50 warm-up requests, then `requests`.
    `log_mode`: 0 the processor only, 1 also build and settle each access log entry, 2 build
    the entry but do not settle it (what the bench itself costs)."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    path = _driver()
    from extproc.access_log import AccessLogService
    from extproc.processor import Processor
    from meritorder.config import load_config
    from meritorder.router import Router

    router = Router(load_config(path.POLICY))
    processor, log = Processor(router), AccessLogService(router)

    async def run(n: int) -> None:
        for i in range(n):
            headers, body = path.messages(model, i)
            state = path.stream_state()
            await processor.process(state, headers)
            reply = await processor.process(state, body)
            if log_mode:
                entry = path.entry_for(i, reply)
                if log_mode == 1:
                    await log.record(entry)

    asyncio.run(run(50))
    asyncio.run(run(requests))


def count(tree: Path, model: str, requests: int, log_mode: int) -> int:
    cmd = [
        *VALGRIND, sys.executable, str(Path(__file__).resolve()),
        "--child", model, str(requests), str(log_mode),
    ]  # fmt: skip
    done = subprocess.run(
        cmd, cwd=tree, env=counted_env(tree), capture_output=True, text=True, check=True
    )
    instructions = collected(done.stderr)
    if instructions is None:
        raise RuntimeError(f"valgrind printed no count:\n{done.stderr[-2000:]}")
    return instructions


async def play_envoy(port: int, model: str, requests: int) -> None:
    """`requests` requests the way Envoy sends them to the router, then their access log."""
    import grpc
    from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
    from envoy.service.ext_proc.v3 import external_processor_pb2_grpc

    path = _driver()
    metadata = (("traceparent", path.TRACEPARENT),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        processor = external_processor_pb2_grpc.ExternalProcessorStub(channel)
        entries = []
        for i in range(requests):
            headers, body = path.messages(model, i)
            call = processor.Process(metadata=metadata)
            await call.write(headers)
            await call.read()
            await call.write(body)
            reply = await call.read()
            await call.done_writing()
            await call.code()  # the stream ends (Envoy closes it after the answer)
            entries.append(path.entry_for(i, reply))
        logs = als_pb2_grpc.AccessLogServiceStub(channel).StreamAccessLogs()
        for start in range(0, len(entries), 50):
            message = als_pb2.StreamAccessLogsMessage()
            if not start:
                message.identifier.log_name = "meritorder"
            message.http_logs.log_entry.extend(entries[start : start + 50])
            await logs.write(message)
        await logs.done_writing()
        await logs


def count_served(tree: Path, model: str, requests: int) -> int:
    """The router process's instructions for `requests` requests played over gRPC."""
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cli = "app.cli" if (tree / "app" / "cli.py").exists() else "meritorder.cli"
    cmd = [
        *VALGRIND, sys.executable, "-m", cli, "serve", "--no-classifier", "--json-logs", "--config",
        str(tree / "deploy" / "keywords.yaml"), "--port", str(port), "--metrics-port", "0",
        "--drain-s", "0",
    ]  # fmt: skip
    env = counted_env(tree)
    err = Path(tempfile.mkstemp(prefix="router-instructions-", suffix=".log")[1])
    with err.open("w") as out:
        router = subprocess.Popen(cmd, cwd=tree, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", port)) == 0:
                        break
                time.sleep(1)
            asyncio.run(play_envoy(port, model, 30))  # warm-up
            asyncio.run(play_envoy(port, model, requests))
        finally:
            router.send_signal(signal.SIGTERM)
            router.wait(timeout=300)
    instructions = collected(err.read_text())
    if instructions is None:
        raise RuntimeError(f"valgrind printed no count for the router; see {err}")
    err.unlink()
    return instructions


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=REPO)
    parser.add_argument("--model", default="small", help="small (explicit) or auto")
    parser.add_argument("--grpc", action="store_true", help="the whole router, over real gRPC")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.grpc:
        low, high = (count_served(args.tree.resolve(), args.model, n) for n in (100, 400))
        served = {"tree": str(args.tree.resolve()), "model": args.model,
                  "router_process": (high - low) // 300}  # fmt: skip
        print(json.dumps(served))
        if args.json:
            args.json.write_text(json.dumps(served, indent=2) + "\n")
        return
    per_request: dict[str, int] = {}
    for name, mode in PHASES.items():
        low, high = (count(args.tree.resolve(), args.model, n, mode) for n in (100, 400))
        per_request[name] = (high - low) // 300
        print(f"{name}: {per_request[name]:,} instructions per request", flush=True)
    result: dict[str, Any] = {
        "tree": str(args.tree.resolve()),
        "model": args.model,
        "processor": per_request["processor"],
        "record": per_request["processor+entry+record"] - per_request["processor+entry"],
    }
    result["processor_and_record"] = result["processor"] + result["record"]
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
