#!/usr/bin/env python3
"""Pool-aware against static routing, through the real Envoy, on a burst that saturates one of
two equivalent models.

Two MOCK models of the same cost: `small` with 2 slots, `large` with 8, both 10 ms per output
token (about 90 ms a request), each behind a FIFO queue (deploy/demo/mock_upstream.py --load).
An open-loop burst of `auto` requests at twice `small`'s capacity goes to:

  static      the policy's first candidate, `small`, whatever its queue;
  pool-aware  the same policy with `metrics_url` and `saturation: {queue: 2}` on both models
              (refreshed every 0.2 s): a queued `small` gives way to `large`.

Reports p50/p99 latency, errors (a request not answered within the client's timeout counts as
a queue timeout), mean cost per request, and the share each model served.

    python bench/pool_burst.py            # bench/results/pool_burst.{json,png}
    python bench/pool_burst.py --quick    # a short burst, bench/results/tmp/
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack import Ports, Stack

from meritorder.cost import cost

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
COST = 0.1  # both models: the same price per 1M tokens
LOAD = {"small": "concurrency=2,token_ms=10", "large": "concurrency=8,token_ms=10"}

POLICY = """
version: 1
models:
  - {{name: small, cluster: mock-small, upstream_model: mock/small-1b, cost: {cost}{small}}}
  - {{name: large, cluster: mock-large, upstream_model: mock/large-70b, cost: {cost}{large}}}
default_model: small
signals:
  - {{name: greeting, keywords: [hello]}}
decisions:
  - {{name: chat, when: greeting, route: [small, large]}}
routing: {{pool_refresh_s: 0.2, pool_stale_s: 2}}
"""


def policy(ports: Ports, aware: bool) -> str:
    def extra(model: str) -> str:
        if not aware:
            return ""
        url = f"http://127.0.0.1:{ports.mocks[model]}/metrics"
        return f', metrics_url: "{url}", saturation: {{queue: 2}}'

    return POLICY.format(cost=COST, small=extra("small"), large=extra("large"))


async def burst(base_url: str, rate: float, seconds: float, timeout_s: float) -> dict[str, Any]:
    """`rate` requests a second for `seconds`, each sent on time whatever the others do."""
    body = {"model": "auto", "messages": [{"role": "user", "content": "hello, a short answer"}]}
    latencies: list[float] = []
    served: dict[str, int] = {}
    costs: list[float] = []
    errors: dict[str, int] = {}
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:

        async def one() -> None:
            started = time.perf_counter()
            try:
                response = await client.post("/v1/chat/completions", json=body)
            except httpx.TimeoutException:
                errors["queue_timeout"] = errors.get("queue_timeout", 0) + 1
                return
            except httpx.HTTPError as error:
                errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
                return
            if response.status_code != 200:
                errors[str(response.status_code)] = errors.get(str(response.status_code), 0) + 1
                return
            latencies.append(time.perf_counter() - started)
            model = response.headers.get("x-meritorder-model", "?")
            served[model] = served.get(model, 0) + 1
            usage = response.json()["usage"]  # measured as the router settles it
            costs.append(cost(COST, usage["prompt_tokens"], usage["completion_tokens"]))

        tasks = []
        start = time.perf_counter()
        for n in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    ms = np.asarray(latencies) * 1000
    requests = len(tasks)
    return {
        "requests": requests,
        "ok": len(latencies),
        "errors": errors,
        "error_rate": round(1 - len(latencies) / requests, 4),
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if len(ms) else None,
        "served": served,
        # From each answer's usage at its model's price (the same for both models here).
        "mean_cost": float(np.mean(costs)) if costs else None,
        "latencies_ms": [round(float(v), 2) for v in ms],
    }


def run(aware: bool, rate: float, seconds: float, timeout_s: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="meritorder-pool-burst-"))
    ports = Ports.free()
    path = workdir / "policy.yaml"
    path.write_text(policy(ports, aware))
    with Stack(ports, router_config=path, workdir=workdir, mock_load=LOAD) as stack:
        warm = httpx.post(
            f"{stack.base_url}/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "hello"}]},
            timeout=10,
        )
        warm.raise_for_status()
        time.sleep(0.5)  # let the pool state see the idle mocks before the burst
        return asyncio.run(burst(stack.base_url, rate, seconds, timeout_s))


def plot(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, result in results.items():
        values = np.sort(np.asarray(result["latencies_ms"]))
        if len(values):
            ax.plot(values, np.arange(1, len(values) + 1) / len(values), label=name)
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log)")
    ax.set_ylabel("share of answered requests")
    ax.set_title("Burst at 2x the small model's capacity: static vs pool-aware")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short burst into results/tmp/")
    parser.add_argument("--rate", type=float, default=44.0, help="requests per second")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--timeout-s", type=float, default=10.0, help="the client's timeout")
    args = parser.parse_args()
    seconds = 2.0 if args.quick else args.seconds
    out = RESULTS / "tmp" if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    results = {
        "static": run(False, args.rate, seconds, args.timeout_s),
        "pool-aware": run(True, args.rate, seconds, args.timeout_s),
    }
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "rate_rps": args.rate,
        "seconds": seconds,
        "client_timeout_s": args.timeout_s,
        "mocks": LOAD,
        "results": results,
    }
    (out / "pool_burst.json").write_text(json.dumps(report, indent=1))
    plot(results, out / "pool_burst.png")
    for name, r in results.items():
        print(
            f"{name:>10}: p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, errors {r['error_rate']:.1%}"
            f" {r['errors']}, served {r['served']}, mean cost {r['mean_cost']:.3g}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
