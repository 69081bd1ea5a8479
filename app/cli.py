"""The `meritorder` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TextIO, TypedDict, cast

from classifiers.profiles import DEFAULT_PROFILE, PROFILES, profile_dir
from meritorder.batch import explain, route_lines
from meritorder.classify import SIGNAL_CACHE_ENTRIES, SIGNAL_CACHE_TTL_S, load_classifier
from meritorder.config import ConfigError, load_config
from meritorder.errors import RequestError
from meritorder.logs import configure_logging
from meritorder.progress import Progress
from meritorder.router import Router

ON_ERROR_HELP = (
    "a bad input line: 'skip' reports it (stderr, with its line number; an 'error' line in the "
    "output) and goes on, 'stop' ends the run there with status 1 (default: skip)"
)


class CliError(Exception):
    """A problem the user can fix: printed as one line with the fix, exit status 2."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meritorder", description=__doc__)
    parser.add_argument("--version", action="version", version=f"meritorder {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the ext_proc and Router gRPC server")
    serve.add_argument("--config", required=True, type=Path, help="policy file (YAML)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    _classifier_args(serve)
    serve.add_argument(
        "--no-classifier", action="store_true", help="keyword and request signals only"
    )
    serve.add_argument("--cpu", action="store_true", help="never use the CUDA provider")
    serve.add_argument(
        "--signal-cache-entries",
        type=int,
        default=SIGNAL_CACHE_ENTRIES,
        help="keep this many classifier rows already encoded (a conversation's earlier turns, "
        "repeated system prompts) for reuse, within 32 MiB; 0 turns the cache off "
        f"(default {SIGNAL_CACHE_ENTRIES})",
    )
    serve.add_argument(
        "--signal-cache-ttl-s",
        type=float,
        default=SIGNAL_CACHE_TTL_S,
        help="encode a cached row again after this many seconds; 0 turns the cache off "
        f"(default {SIGNAL_CACHE_TTL_S:g})",
    )
    serve.add_argument(
        "--signal-cache-store",
        metavar="URL",
        help="keep the signal cache in Redis (redis://host:port/db), shared by every router on "
        "it and bounded by its maxmemory; unreachable, rows are encoded and counted as errors",
    )
    serve.add_argument(
        "--gil-switch-interval-ms",
        type=float,
        default=None,
        help="how long the event loop may hold Python's GIL while the classifier's worker "
        "thread waits for it, in ms (default 0.5; Python's own is 5)",
    )
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
        "--state-store",
        metavar="URL",
        help="keep the router's shared state in Redis (redis://host:port/db): tenant budgets, and "
        "each request's decision, outcome and feedback, shared by every router on it; default: "
        "in this process",
    )
    serve.add_argument(
        "--state-store-down",
        choices=("local", "fail"),
        default="local",
        help="when Redis cannot be reached: count budgets in this process's own store (local, "
        "counted and marked budget_store=local), or fail the decision as routing.on_error says "
        "(fail); feedback gets a 503 either way",
    )
    serve.add_argument(
        "--learning-store",
        metavar="STORE",
        help="where learning decisions keep their estimates: memory, sqlite:PATH (survives a "
        "restart) or redis://host:port/db (shared by replicas); default: the policy's "
        "learning.store, else memory",
    )
    serve.add_argument(
        "--json-logs", action="store_true", default=None, help="JSON log lines even on a terminal"
    )

    validate = commands.add_parser("validate", help="check policy files; exit 1 on any problem")
    validate.add_argument("configs", nargs="+", type=Path)

    route = commands.add_parser("route", help="route JSONL prompts offline; one decision per line")
    _classifier_args(route, model_dir=False)
    route.add_argument("--config", required=True, type=Path)
    route.add_argument("--input", default="-", help="JSONL file, or - for stdin")
    route.add_argument("--output", default="-", help="JSONL file, or - for stdout")
    route.add_argument("--on-error", choices=("skip", "stop"), default="skip", help=ON_ERROR_HELP)

    explain = commands.add_parser("explain", help="show how the policy decides for one prompt")
    _classifier_args(explain, model_dir=False)
    explain.add_argument("--config", required=True, type=Path)
    explain.add_argument("--model", help="the model the client asks for (default: virtual)")
    explain.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    explain.add_argument("prompt")

    classify = commands.add_parser("classify", help="signals of JSONL prompts (text or messages)")
    classify.add_argument("--input", default="-", help="JSONL file, or - for stdin")
    classify.add_argument("--output", default="-", help="JSONL file, or - for stdout")
    _classifier_args(classify)
    classify.add_argument("--cpu", action="store_true", help="never use the CUDA provider")
    classify.add_argument(
        "--on-error", choices=("skip", "stop"), default="skip", help=ON_ERROR_HELP
    )

    evaluation = commands.add_parser("eval", help="cost and accuracy of a policy vs single models")
    _classifier_args(evaluation, model_dir=False)
    evaluation.add_argument("--config", required=True, type=Path)
    evaluation.add_argument(
        "--data", required=True, help="JSONL with per-model `correct`, or - for stdin"
    )
    evaluation.add_argument("--prompts", help="JSONL {id, text} to join by id")
    evaluation.add_argument(
        "--pair",
        default="llama-3.1-8b-instruct,llama-3.1-70b-instruct",
        help="WEAK,STRONG models for the difficulty sweep",
    )
    evaluation.add_argument("--plot", type=Path, help="write the frontier as a PNG")
    evaluation.add_argument(
        "--feedback",
        action="store_true",
        help="replay in file order, feeding each chosen model's correctness back as feedback "
        "(learning decisions learn); adds the learning curve and regret (--plot: the curve)",
    )
    evaluation.add_argument(
        "--windows", type=int, default=10, help="windows of the learning curve (default 10)"
    )
    evaluation.add_argument(
        "--seed",
        default="offline",
        help="key of the learned picks' draws: the same seed replays the same decisions",
    )
    evaluation.add_argument(
        "--json", help="write the figures as JSON (- for stdout; the table then goes to stderr)"
    )
    evaluation.add_argument(
        "--on-error",
        choices=("skip", "stop"),
        default="skip",
        help="a bad data line: 'skip' reports it and leaves it out, 'stop' ends the run",
    )

    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args)
    run: dict[str, Callable[[argparse.Namespace], int]] = {
        "validate": lambda a: _validate(a.configs),
        "route": _route,
        "explain": _explain,
        "eval": _eval,
        "classify": _classify,
    }
    try:
        return run[args.command](args)
    except ConfigError as error:  # the policy file's problems, each on its own line already
        print(error, file=sys.stderr)
        return 2
    except CliError as error:
        print(f"meritorder {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"meritorder {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit-time flush of
        # stdout from printing a traceback of its own.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _version() -> str:
    try:
        return importlib.metadata.version("meritorder")
    except importlib.metadata.PackageNotFoundError:  # run from a tree that was never installed
        return "unknown"


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


def _classifier_args(parser: argparse.ArgumentParser, model_dir: bool = True) -> None:
    parser.add_argument(
        "--classifier-profile",
        choices=tuple(PROFILES),
        default=DEFAULT_PROFILE,
        help="the shipped signal model: accurate (6 layers) or fast (its distilled student) "
        f"(default {DEFAULT_PROFILE}; see classifiers/models/MODEL_CARD.md, Profiles)",
    )
    parser.add_argument(
        "--classifier-segments",
        action="store_true",
        help="also score each line of pasted user and tool text for a planted instruction "
        "(indirect injection) with the model's segment head; off by default: it flags many "
        "requests that hold several instructions of their own (MODEL_CARD.md, The segment head)",
    )
    parser.add_argument(
        "--pii-second-opinion",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="keep a PII name or address the model finds only where a second tagger (Rampart) "
        "finds one too: a sixth to a quarter of PII-free requests were flagged without it "
        "(default on; MODEL_CARD.md, PII: a second opinion)",
    )
    if model_dir:
        parser.add_argument(
            "--model-dir", type=Path, help="a classifier model directory (overrides the profile)"
        )


def _model_dir(args: argparse.Namespace) -> Path:
    """`--model-dir` when given, else the directory of `--classifier-profile`."""
    given: Path | None = getattr(args, "model_dir", None)
    return given if given is not None else profile_dir(args.classifier_profile)


def _offline_router(args: argparse.Namespace, seed: str = "offline") -> Router:
    configure_logging(json_logs=False, level="WARNING")
    config = load_config(args.config)
    classifier = (
        load_classifier(
            _model_dir(args),
            segments=args.classifier_segments,
            pii_second_opinion=args.pii_second_opinion,
        )
        if config.uses_classifier()
        else None
    )
    # A fixed seed key: the same input replays the same learned picks.
    return Router(config, classifier, enforce_timeout=False, seed_key=seed.encode())


def _route(args: argparse.Namespace) -> int:
    with _open(args.input, "r", "--input") as source, _open(args.output, "w", "--output") as sink:
        router = _offline_router(args)
        bad = _BadLines("route", args)
        count = asyncio.run(route_lines(router, source, sink, **bad.options))
        bad.progress.close()
    return bad.finish("routed", count, args.on_error)


def _explain(args: argparse.Namespace) -> int:
    router = _offline_router(args)
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
    with _open(args.input, "r", "--input") as source, _open(args.output, "w", "--output") as sink:
        try:
            engine = SignalEngine.load(
                _model_dir(args),
                force_cpu=args.cpu,
                segments=args.classifier_segments,
                pii_second_opinion=args.pii_second_opinion,
            )
        except (OSError, SpecError, ValueError) as error:
            print(f"cannot load the classifier model: {error}", file=sys.stderr)
            return 2
        bad = _BadLines("classify", args)
        run_classify(source, sink, engine, **bad.options)
        bad.progress.close()
    return bad.finish("classified", bad.count, args.on_error)


def _eval(args: argparse.Namespace) -> int:
    from meritorder import evaluate

    def left_out(which: str, number: int, error: str) -> None:
        path = getattr(args, which)
        print(f"{'<stdin>' if path == '-' else path}:{number}: {error} (left out)", file=sys.stderr)

    if args.windows < 1:
        raise CliError(f"--windows {args.windows}: use 1 or more")
    with contextlib.ExitStack() as files:
        data = files.enter_context(_open(args.data, "r", "--data"))
        prompts = (
            files.enter_context(_open(args.prompts, "r", "--prompts")) if args.prompts else None
        )
        try:
            rows = evaluate.load_rows(
                data, prompts, on_bad=left_out if args.on_error == "skip" else None
            )
        except evaluate.BadLine as error:
            fix = "fix it, or pass --on-error skip to leave bad lines out"
            raise CliError(f"{error}; {fix}") from None
        except ValueError as error:
            raise CliError(str(error)) from None
    if not rows:
        raise CliError(
            f"{args.data}: no usable rows; each line is a JSON object with a prompt and 'correct'"
        )
    router = _offline_router(args, args.seed)
    weak, _, strong = args.pair.partition(",")
    progress = Progress("eval", len(rows))
    try:
        pair = (weak, strong) if strong else None
        if args.feedback:
            run = evaluate.evaluate_feedback(router, rows, pair, progress.advance, args.windows)
        else:
            run = evaluate.evaluate(router, rows, pair, progress.advance)
        report = asyncio.run(run)
    except (RequestError, ValueError) as error:
        raise CliError(f"a row of {args.data} cannot be routed: {error}") from None
    finally:
        progress.close()
    print(report.table(), file=sys.stderr if args.json == "-" else sys.stdout)
    if args.json:
        with _open(args.json, "w", "--json") as sink:
            sink.write(json.dumps(report.to_json(), indent=2) + "\n")
    if args.plot and report.feedback is not None:
        evaluate.plot_feedback(report, Path(args.plot), f"{args.config.name} on {args.data}")
    elif args.plot:
        evaluate.plot(report, {m.name: m.cost for m in router.config.models}, Path(args.plot))
    return 0


class _LineOptions(TypedDict):
    """How a JSONL command goes over its lines (`route_lines`, `run_classify`)."""

    stop_on_error: bool
    on_bad: Callable[[int, str], None]
    progress: Callable[[int], None]


class _BadLines:
    """Reports bad input lines of `command`'s --input on stderr as FILE:LINE: error, the first
    `SHOWN` of them, and shows its progress bar."""

    SHOWN = 20

    def __init__(self, command: str, args: argparse.Namespace) -> None:
        self.source = "<stdin>" if args.input == "-" else args.input
        self.progress = Progress(command, _count_lines(args.input))
        self.count = 0
        self.options = _LineOptions(
            stop_on_error=args.on_error == "stop", on_bad=self, progress=self.progress.advance
        )

    def __call__(self, number: int, error: str) -> None:
        self.count += 1
        if self.count <= self.SHOWN:
            self.progress.close()
            print(f"{self.source}:{number}: {error}", file=sys.stderr)

    def finish(self, done: str, bad: int, on_error: str) -> int:
        """The closing line and the exit status: 1 when the run stopped on a bad line."""
        if not bad:
            return 0
        if on_error == "stop":
            print(
                "stopped at the first bad line (--on-error stop); the lines before it are in "
                "the output",
                file=sys.stderr,
            )
            return 1
        more = f", {bad - self.SHOWN} not shown above" if bad > self.SHOWN else ""
        print(
            f"{bad} line(s) could not be {done} (their output lines hold 'error'{more}); each "
            'line is one JSON object: {"id": ..., "text": "..."} or {"id": ..., "messages": '
            "[...]}",
            file=sys.stderr,
        )
        return 0


def _count_lines(path: str) -> int | None:
    """Non-blank lines of a file, for the progress bar; None for stdin or when nobody sees it."""
    if path == "-" or not sys.stderr.isatty():
        return None
    with open(path, encoding="utf-8", errors="replace") as handle:
        return sum(1 for line in handle if line.strip())


@contextlib.contextmanager
def _open(path: str, mode: str, flag: str) -> Iterator[TextIO]:
    """A file, or stdin/stdout for `-`; one readable line (CliError) if it cannot be opened."""
    if path == "-":
        if mode == "r" and sys.stdin.isatty():
            print("reading JSONL from stdin (end with Ctrl-D)", file=sys.stderr)
        yield sys.stdin if mode == "r" else sys.stdout
        return
    try:
        handle = open(path, mode, encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        what = "read" if mode == "r" else "write"
        fix = "pass an existing file, or - for stdin" if mode == "r" else "pick a writable path"
        raise CliError(f"cannot {what} {flag} {path}: {exc.strerror or exc}; {fix}") from None
    with handle:
        yield cast(TextIO, handle)


def _serve(args: argparse.Namespace) -> int:
    from app.server import GIL_SWITCH_INTERVAL_MS, ServerOptions, file_stamp, serve

    configure_logging(json_logs=args.json_logs)
    stamp = file_stamp(args.config)  # before reading: a later change is reloaded
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
    for flag, value in (
        ("--signal-cache-entries", args.signal_cache_entries),
        ("--signal-cache-ttl-s", args.signal_cache_ttl_s),
    ):
        if value < 0:
            print(f"{flag} {value}: use 0 (off) or more", file=sys.stderr)
            return 2
    switch_ms = args.gil_switch_interval_ms
    if switch_ms is not None and not 0.01 <= switch_ms <= 100:
        print(f"--gil-switch-interval-ms {switch_ms}: use 0.01 to 100", file=sys.stderr)
        return 2
    if args.learning_store is not None and not re.fullmatch(
        r"memory|sqlite:.+|rediss?://.+", args.learning_store
    ):
        print(
            f"--learning-store {args.learning_store!r}: use memory, sqlite:PATH or "
            "redis://host:port/db",
            file=sys.stderr,
        )
        return 2
    options = ServerOptions(
        config_path=args.config,
        host=args.host,
        port=args.port,
        metrics_port=args.metrics_port,
        classifier=not args.no_classifier,
        model_dir=_model_dir(args),
        force_cpu=args.cpu,
        classifier_segments=args.classifier_segments,
        pii_second_opinion=args.pii_second_opinion,
        signal_cache_entries=args.signal_cache_entries,
        signal_cache_ttl_s=args.signal_cache_ttl_s,
        signal_cache_store=args.signal_cache_store,
        gil_switch_interval_ms=GIL_SWITCH_INTERVAL_MS if switch_ms is None else switch_ms,
        reuse_port=args.workers > 1,
        drain_s=args.drain_s,
        shutdown_grace_s=args.shutdown_grace_s,
        state_store=args.state_store,
        state_store_down=args.state_store_down,
        learning_store=args.learning_store,
        config_stamp=stamp,
    )
    if args.workers == 1:
        asyncio.run(serve(config, options))
        return 0
    from app.server import serve_workers

    return serve_workers(config, options, args.workers, json_logs=args.json_logs)


if __name__ == "__main__":
    sys.exit(main())
