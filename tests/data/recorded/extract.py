#!/usr/bin/env python3
"""Extract the requests of recorded-HTTP cassettes into one JSON file per request, so the replay
test needs neither the network nor YAML. Reads go-vcr cassettes (envoyproxy/ai-gateway) and
vcrpy cassettes (pydantic/pydantic-ai, whose requests keep a `parsed_body`).

    python tests/data/recorded/extract.py OUT_DIR CASSETTE_OR_FOLDER... --source OWNER/REPO@COMMIT
        [--prefix NAME-]

Each output file holds the request as it was sent (method, path, content type, the body as the
recorded string, or re-serialized from a `parsed_body`) and the status the provider answered,
which the replay test reads to tell the requests the provider rejected from the ones it served.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml


def requests_of(cassette: Path, source: str = "", prefix: str = "") -> list[dict[str, Any]]:
    """The recorded requests of one cassette, in the order they were sent; `source` prefixes
    the cassette's path in each record (e.g. `owner/repo@commit`), `prefix` its name."""
    loaded = yaml.safe_load(cassette.read_text(encoding="utf-8"))
    interactions = loaded.get("interactions") or []
    stem = prefix + re.sub(r"[^A-Za-z0-9_.-]+", "-", cassette.stem).strip("-")
    out = []
    for index, interaction in enumerate(interactions):
        request, response = interaction["request"], interaction.get("response") or {}
        headers = {k.lower(): v for k, v in (request.get("headers") or {}).items()}
        url = urlsplit(request.get("url") or request["uri"])  # go-vcr: url; vcrpy: uri
        status = response.get("code") or (response.get("status") or {}).get("code", 0)
        out.append(
            {
                "name": stem if len(interactions) == 1 else f"{stem}-{index}",
                "source": f"{source}:{cassette}" if source else str(cassette),
                "method": request["method"],
                "path": url.path + (f"?{url.query}" if url.query else ""),
                "content_type": (headers.get("content-type") or [""])[0],
                "status": int(status),
                "body": _body(request),
            }
        )
    return out


def _body(request: dict[str, Any]) -> str:
    if "parsed_body" in request:  # pydantic-ai's vcrpy serializer keeps the JSON parsed
        return json.dumps(request["parsed_body"], indent=2, ensure_ascii=False)
    body = request.get("body") or ""
    return str(body.get("string", "") if isinstance(body, dict) else body)


def _cassettes(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        found.extend(sorted(path.glob("*.yaml")) if path.is_dir() else [path])
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="where to write one <name>.json per request")
    parser.add_argument("cassettes", type=Path, nargs="+", help="cassette files or folders")
    parser.add_argument("--source", default="", help="where the cassettes came from")
    parser.add_argument("--prefix", default="", help="prefix each request's name with this")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    count = 0
    for cassette in _cassettes(args.cassettes):
        for record in requests_of(cassette, args.source, args.prefix):
            target = args.out / f"{record['name']}.json"
            target.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
            count += 1
    print(f"wrote {count} requests to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
