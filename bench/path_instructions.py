"""Instructions per request of the router's own work, counted by valgrind: repeatable on a noisy
machine, where timings of a few hundred microseconds are not.

    python bench/path_instructions.py [--tree DIR] [--model small] [--json OUT]

Counts, with `valgrind --tool=callgrind` (Debian's `valgrind`), the instructions of the
processor's two request phases (as `bench/processor_path.py` drives them, keyword demo policy),
and of settling each request's access log entry (`AccessLogService.record`). Each phase is the
difference between a run of 400 and a run of 100 requests, divided by 300, so start-up and
imports cancel out; hash randomization is fixed (PYTHONHASHSEED=0). `--tree` measures another
checkout (e.g. `git worktree add --detach /tmp/before <rev>`) with this script's driver and this
repo's virtualenv. About a minute per phase and tree on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
PHASES = {"processor": 0, "processor+entry": 2, "processor+entry+record": 1}


def child(model: str, requests: int, log_mode: int) -> None:
    """Run inside valgrind, in the tree being measured: 50 warm-up requests, then `requests`.
    `log_mode`: 0 the processor only, 1 also build and settle each access log entry, 2 build
    the entry but do not settle it (what the bench itself costs)."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    spec = importlib.util.spec_from_file_location(
        "processor_path", REPO / "bench" / "processor_path.py"
    )
    assert spec is not None and spec.loader is not None
    path = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(path)
    from extproc.access_log import AccessLogService
    from extproc.processor import Processor, StreamState
    from meritorder.config import load_config
    from meritorder.router import Router

    router = Router(load_config(path.POLICY))
    processor, log = Processor(router), AccessLogService(router)

    async def run(n: int) -> None:
        for i in range(n):
            headers, body = path.messages(model, i)
            state = StreamState()
            await processor.process(state, headers)
            reply = await processor.process(state, body)
            if log_mode:
                routed = reply.request_body.response.header_mutation.set_headers
                chosen = next(h for h in routed if h.header.key == "x-meritorder-model")
                entry = path.log_entry(i, chosen.header.raw_value.decode(), reply)
                if log_mode == 1:
                    await log.record(entry)

    asyncio.run(run(50))
    asyncio.run(run(requests))


def count(tree: Path, model: str, requests: int, log_mode: int) -> int:
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
        str(Path(__file__).resolve()), "--child", model, str(requests), str(log_mode),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(tree)}
    done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(f"valgrind printed no count:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=REPO)
    parser.add_argument("--model", default="small", help="small (explicit) or auto")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
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
