#!/usr/bin/env python3
"""Extract the requests of go-vcr cassettes (envoyproxy/ai-gateway's recorded OpenAI traffic)
into one JSON file per request, so the replay test needs neither the network nor YAML.

    git --git-dir=... archive <commit> tests/internal/testopenai/cassettes | tar -x -C /tmp/aigw
    python tests/data/recorded/extract.py /tmp/aigw/tests/internal/testopenai/cassettes \
        tests/data/recorded/aigw --source envoyproxy/ai-gateway@<commit>:<folder>

Each output file holds the request as it was sent (method, path, content type, the body as the
exact string recorded) and the status the provider answered, which the replay test reads to
tell the requests the provider rejected from the ones it served.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml


def requests_of(cassette: Path, source: str = "") -> list[dict[str, Any]]:
    """The recorded requests of one cassette, in the order they were sent; `source` prefixes
    the cassette's file name in each record (e.g. `owner/repo@commit:folder`)."""
    loaded = yaml.safe_load(cassette.read_text(encoding="utf-8"))
    out = []
    interactions = loaded.get("interactions") or []
    for index, interaction in enumerate(interactions):
        request, response = interaction["request"], interaction.get("response") or {}
        headers = {k.lower(): v for k, v in (request.get("headers") or {}).items()}
        url = urlsplit(request["url"])
        name = cassette.stem if len(interactions) == 1 else f"{cassette.stem}-{index}"
        out.append(
            {
                "name": name,
                "source": f"{source}/{cassette.name}" if source else cassette.name,
                "method": request["method"],
                "path": url.path + (f"?{url.query}" if url.query else ""),
                "content_type": (headers.get("content-type") or [""])[0],
                "status": int(response.get("code", 0)),
                "body": request.get("body") or "",
            }
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cassettes", type=Path, help="a folder of go-vcr *.yaml cassettes")
    parser.add_argument("out", type=Path, help="where to write one <name>.json per request")
    parser.add_argument("--source", default="", help="where the cassettes came from")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    count = 0
    for cassette in sorted(args.cassettes.glob("*.yaml")):
        for record in requests_of(cassette, args.source):
            target = args.out / f"{record['name']}.json"
            target.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
            count += 1
    print(f"wrote {count} requests to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
