#!/usr/bin/env python3
"""The pure policy's cost per call: `decide` for `auto` and for an explicit model.

    python bench/decide.py [--config examples/enterprise.yaml] [--calls 20000]

In-process, without the classifier (keyword, token, tool and header signals run; classifier
signals do not fire), with a budget tenant, best of 5 repeats. Run it on two revisions (e.g.
`PYTHONPATH=<an archive of the old meritorder/ and classifiers/>`) to compare them.
"""

from __future__ import annotations

import argparse
import json
import timeit
from pathlib import Path

from meritorder.config import load_config
from meritorder.endpoints import parse
from meritorder.policy import Observation, PoolState, decide

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Why does my Python script print a stack trace when I call json.loads on bytes?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=ROOT / "examples" / "enterprise.yaml")
    parser.add_argument("--calls", type=int, default=20_000)
    args = parser.parse_args()
    config = load_config(args.config)
    for label, model in (("auto", config.virtual_models[0]), ("explicit", config.models[0].name)):
        body = {
            "model": model,
            "max_tokens": 100,
            "messages": [{"role": "user", "content": PROMPT}],
        }
        request = parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)
        obs = Observation(request, {"x-meritorder-tenant": "acme"})
        call = lambda obs=obs: decide(config, obs, PoolState())  # noqa: E731
        runs = timeit.repeat(call, number=args.calls, repeat=5)
        print(f"{label:<8} decide: {min(runs) / args.calls * 1e6:.1f} us per call")


if __name__ == "__main__":
    main()
