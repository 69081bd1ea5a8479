"""The `meritorder` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO, cast

from meritorder.batch import explain, route_lines
from meritorder.classify import load_classifier
from meritorder.config import ConfigError, load_config
from meritorder.errors import RequestError
from meritorder.logs import configure_logging
from meritorder.router import Router


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meritorder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the ext_proc and Router gRPC server")
    serve.add_argument("--config", required=True, type=Path, help="policy file (YAML)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    serve.add_argument(
        "--model-dir", type=Path, help="classifier model directory (default: shipped)"
    )
    serve.add_argument(
        "--no-classifier", action="store_true", help="keyword and request signals only"
    )
    serve.add_argument("--cpu", action="store_true", help="never use the CUDA provider")
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="router processes sharing the port (SO_REUSEPORT); worker i serves metrics on "
        "--metrics-port + i",
    )
    serve.add_argument(
        "--drain-s",
        type=float,
        default=2.0,
        help="after SIGTERM, keep serving new streams this long while health says NOT_SERVING "
        "(default 2)",
    )
    serve.add_argument(
        "--shutdown-grace-s",
        type=float,
        default=2.0,
        help="then wait this long for requests still being decided (default 2)",
    )
    serve.add_argument(
        "--budget-store",
        metavar="URL",
        help="keep tenant budgets in Redis (redis://host:port/db), shared by every router on it; "
        "default: in this process",
    )
    serve.add_argument(
        "--budget-store-down",
        choices=("local", "fail"),
        default="local",
        help="when Redis cannot be reached: count in this process's own store (local, counted "
        "and marked budget_store=local), or fail the decision as routing.on_error says (fail)",
    )
    serve.add_argument(
        "--json-logs", action="store_true", default=None, help="JSON log lines even on a terminal"
    )

    validate = commands.add_parser("validate", help="check policy files; exit 1 on any problem")
    validate.add_argument("configs", nargs="+", type=Path)

    route = commands.add_parser("route", help="route JSONL prompts offline; one decision per line")
    route.add_argument("--config", required=True, type=Path)
    route.add_argument("--input", default="-", help="JSONL file, or - for stdin")
    route.add_argument("--output", default="-", help="JSONL file, or - for stdout")

    explain = commands.add_parser("explain", help="show how the policy decides for one prompt")
    explain.add_argument("--config", required=True, type=Path)
    explain.add_argument("--model", help="the model the client asks for (default: virtual)")
    explain.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    explain.add_argument("prompt")

    classify = commands.add_parser("classify", help="signals of JSONL prompts (text or messages)")
    classify.add_argument("--input", default="-", help="JSONL file, or - for stdin")
    classify.add_argument("--output", default="-", help="JSONL file, or - for stdout")
    classify.add_argument("--model-dir", type=Path, help="classifier model directory")
    classify.add_argument("--cpu", action="store_true", help="never use the CUDA provider")

    evaluation = commands.add_parser("eval", help="cost and accuracy of a policy vs single models")
    evaluation.add_argument("--config", required=True, type=Path)
    evaluation.add_argument(
        "--data", required=True, type=Path, help="JSONL with per-model `correct`"
    )
    evaluation.add_argument("--prompts", type=Path, help="JSONL {id, text} to join by id")
    evaluation.add_argument(
        "--pair",
        default="llama-3.1-8b-instruct,llama-3.1-70b-instruct",
        help="WEAK,STRONG models for the difficulty sweep",
    )
    evaluation.add_argument("--plot", type=Path, help="write the frontier as a PNG")
    evaluation.add_argument("--json", type=Path, help="write the figures as JSON")

    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(args.configs)
    if args.command == "route":
        return _route(args)
    if args.command == "explain":
        return _explain(args)
    if args.command == "eval":
        return _eval(args)
    if args.command == "classify":
        return _classify(args)
    return _serve(args)


def _validate(paths: list[Path]) -> int:
    failed = 0
    for path in paths:
        try:
            config = load_config(path)
        except ConfigError as error:
            print(error, file=sys.stderr)
            failed += 1
            continue
        print(
            f"{path}: ok ({len(config.models)} models, {len(config.signals)} signals, "
            f"{len(config.decisions)} decisions)"
        )
    return 1 if failed else 0


def _offline_router(path: Path) -> Router:
    configure_logging(json_logs=False, level="WARNING")
    config = load_config(path)
    classifier = load_classifier() if config.uses_classifier() else None
    return Router(config, classifier, enforce_timeout=False)


def _route(args: argparse.Namespace) -> int:
    try:
        router = _offline_router(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    with _open(args.input, "r") as source, _open(args.output, "w") as sink:
        bad = asyncio.run(route_lines(router, source, sink))
    if bad:
        print(f"{bad} line(s) could not be routed (see their 'error')", file=sys.stderr)
    return 0


def _explain(args: argparse.Namespace) -> int:
    try:
        router = _offline_router(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    headers = {}
    for item in args.header:
        name, sep, value = item.partition(":")
        if not sep:
            print(f"--header {item!r}: expected NAME:VALUE", file=sys.stderr)
            return 2
        headers[name.strip().lower()] = value.strip()
    try:
        print(asyncio.run(explain(router, args.prompt, headers, args.model)))
    except RequestError as error:
        print(f"error {error.status}: {error.message}", file=sys.stderr)
        return 1
    return 0


def _classify(args: argparse.Namespace) -> int:
    from classifiers.cli import run_classify
    from classifiers.engine import SignalEngine
    from classifiers.spec import SpecError

    configure_logging(json_logs=False, level="WARNING")
    try:
        engine = SignalEngine.load(args.model_dir, force_cpu=args.cpu)
    except (OSError, SpecError, ValueError) as error:
        print(f"cannot load the classifier model: {error}", file=sys.stderr)
        return 2
    with _open(args.input, "r") as source, _open(args.output, "w") as sink:
        failed = run_classify(source, sink, engine)
    if failed:
        print("some lines could not be classified (see their 'error')", file=sys.stderr)
    return 0


def _eval(args: argparse.Namespace) -> int:
    from meritorder import evaluate

    try:
        router = _offline_router(args.config)
        rows = evaluate.load_rows(args.data, args.prompts)
    except (ConfigError, ValueError, OSError) as error:
        print(error, file=sys.stderr)
        return 2
    weak, _, strong = args.pair.partition(",")
    report = asyncio.run(evaluate.evaluate(router, rows, (weak, strong) if strong else None))
    print(report.table())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    if args.plot:
        evaluate.plot(report, {m.name: m.cost for m in router.config.models}, args.plot)
    return 0


@contextlib.contextmanager
def _open(path: str, mode: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdin if mode == "r" else sys.stdout
        return
    with open(path, mode, encoding="utf-8") as handle:
        yield cast(TextIO, handle)


def _serve(args: argparse.Namespace) -> int:
    from meritorder.server import ServerOptions, serve

    configure_logging(json_logs=args.json_logs)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    if args.workers < 1:
        print(f"--workers {args.workers}: use 1 or more", file=sys.stderr)
        return 2
    for flag, value in (("--drain-s", args.drain_s), ("--shutdown-grace-s", args.shutdown_grace_s)):
        if not 0 <= value <= 300:
            print(f"{flag} {value}: use 0 to 300 seconds", file=sys.stderr)
            return 2
    options = ServerOptions(
        config_path=args.config,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        classifier=not args.no_classifier,
        model_dir=args.model_dir,
        force_cpu=args.cpu,
        reuse_port=args.workers > 1,
        drain_s=args.drain_s,
        shutdown_grace_s=args.shutdown_grace_s,
        budget_store=args.budget_store,
        budget_store_down=args.budget_store_down,
    )
    if args.workers == 1:
        asyncio.run(serve(config, options))
        return 0
    from meritorder.server import serve_workers

    return serve_workers(config, options, args.workers, json_logs=args.json_logs)


if __name__ == "__main__":
    sys.exit(main())
