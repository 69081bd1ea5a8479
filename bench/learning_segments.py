"""Where a feedback replay's answers go, per segment of the stream (a run of one `task`).

The loop of `meritorder eval --feedback` (decide each row before its outcome, feed the chosen
model's correctness back), with each row's pick kept: per segment, the rows, the router's
correct answers, the best single model's (in hindsight, on the whole replay) and the static
pick's, the explored picks, the answers they lost (the greedy model was right where the
explored one was wrong, less the reverse), the change detector's resets, and the model most
routed to.

    .venv/bin/python bench/learning_segments.py --config examples/llmrouter-learning.yaml \\
        --data examples/data/llmrouter_shift.jsonl [--seed offline] [--static MODEL]
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from classifiers.profiles import DEFAULT_PROFILE, profile_dir
from meritorder.classify import load_classifier
from meritorder.config import load_config
from meritorder.evaluate import observe_rows
from meritorder.policy import Routed
from meritorder.router import Router


async def replay(config_path: Path, rows: list[dict[str, Any]], seed: str) -> list[dict[str, Any]]:
    config = load_config(config_path)
    # A policy on domain signals (a contextual pool) needs the classifier `eval` loads.
    classifier = load_classifier(profile_dir(DEFAULT_PROFILE)) if config.uses_classifier() else None
    router = Router(config, classifier, enforce_timeout=False, seed_key=seed.encode())
    # Classified as `eval --feedback` classifies them, so that the figures are its own.
    observed = await observe_rows(router, rows)
    picks = []
    for number, (row, (request, headers, obs)) in enumerate(zip(rows, observed, strict=True)):
        # The request id `eval --feedback` gives the row: the same seed, the same draws.
        headers = {**headers, "x-request-id": f"eval-{number}-{row.get('id', '')}"}
        obs = replace(obs, headers=headers)
        decision = await router.route(request, headers, observed=obs)
        assert isinstance(decision, Routed) and decision.pick is not None
        model = decision.model.name
        # Resets counted as `eval` counts them: those this row's reward set off (a pick's own
        # `resets` is its context's running count, which a contextual pool keeps per domain).
        fired = await router.observe_reward(
            decision.pick.context, model, float(row["correct"][model])
        )
        picks.append(
            {
                "model": model,
                "greedy": decision.pick.greedy,
                "explored": decision.pick.explored,
                "resets": fired,
            }
        )
    return picks


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--seed", default="offline", help="eval's --seed (default offline)")
    parser.add_argument("--static", default="llama-3.1-nemotron-51b-instruct")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.data.open()]
    picks = asyncio.run(replay(args.config, rows, args.seed))
    models = list(rows[0]["correct"])
    best = max(models, key=lambda m: sum(r["correct"][m] for r in rows))
    segments: list[tuple[str, int, int]] = []  # (task, start, end)
    for i, row in enumerate(rows):
        if segments and segments[-1][0] == row["task"]:
            segments[-1] = (row["task"], segments[-1][1], i + 1)
        else:
            segments.append((row["task"], i, i + 1))
    print(
        f"| segment | rows | router correct | {best} | {args.static} | explored | "
        "lost by exploring | resets | top model (share) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    previous = 0

    def line(name: str, span: range) -> None:
        nonlocal previous
        got = sum(rows[i]["correct"][picks[i]["model"]] for i in span)
        lost = sum(
            rows[i]["correct"][picks[i]["greedy"]] - rows[i]["correct"][picks[i]["model"]]
            for i in span
            if picks[i]["explored"]
        )
        top, count = Counter(picks[i]["model"] for i in span).most_common(1)[0]
        resets = sum(picks[i]["resets"] for i in span)
        print(
            f"| {name} | {len(span)} | {got:.0f} | "
            f"{sum(rows[i]['correct'][best] for i in span):.0f} | "
            f"{sum(rows[i]['correct'][args.static] for i in span):.0f} | "
            f"{sum(picks[i]['explored'] for i in span)} | {lost:+.0f} | {resets} | "
            f"{top} ({count / len(span):.0%}) |"
        )

    for task, start, end in segments:
        line(task, range(start, end))
    line("all", range(len(rows)))


if __name__ == "__main__":
    main()
