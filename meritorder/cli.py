"""The `meritorder` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from meritorder.config import ConfigError, load_config
from meritorder.logs import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meritorder", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the ext_proc and Router gRPC server")
    serve.add_argument("--config", required=True, type=Path, help="policy file (YAML)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=50051)
    serve.add_argument(
        "--json-logs", action="store_true", default=None, help="JSON log lines even on a terminal"
    )

    validate = commands.add_parser("validate", help="check policy files; exit 1 on any problem")
    validate.add_argument("configs", nargs="+", type=Path)

    args = parser.parse_args(argv)
    if args.command == "validate":
        return _validate(args.configs)
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


def _serve(args: argparse.Namespace) -> int:
    from meritorder.server import ServerOptions, serve

    configure_logging(json_logs=args.json_logs)
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return 2
    asyncio.run(
        serve(config, ServerOptions(config_path=args.config, host=args.host, port=args.port))
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
