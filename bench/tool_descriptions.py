#!/usr/bin/env python3
"""What reading tool descriptions costs and catches, through the router's classifier adapter.

    python bench/tool_descriptions.py [--requests 150] [--planted 60] [--seed 7]
    python bench/tool_descriptions.py --arguments   # the arguments of the history's tool calls

The attack head reads every `description` of a request's tool definitions as a tool turn
(`RequestView.classifier_messages`). No corpus of real tool definitions ships here, so benign
descriptions are a proxy: the first paragraphs of the Python standard library's docstrings
(frameworks such as LangChain's `@tool` make a function's docstring its description). Requests
are a benign prompt (`benign_prompts.jsonl`) with 1, 3, 5, 10 or 20 such tools, on the chat API.

Reports: benign requests the attack signal flags without tools and with them; of the
`prompt_attacks.jsonl` jailbreaks (under 600 characters) the router blocks when sent alone, the
share still blocked when planted as one of five tools' descriptions under a benign prompt (before
descriptions were read: none); requests with PII findings without and with the tools (the PII
model's spans in descriptions are dropped, so only the patterns' findings may add any); and the
rows each request became. Results: bench/results/tool_descriptions.json.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import platform
import random
from pathlib import Path
from typing import Any

from meritorder.classify import EngineClassifier, load_classifier
from meritorder.endpoints import parse

REPO = Path(__file__).resolve().parent.parent
GUARD = REPO / "classifiers" / "training" / "data" / "guard"
MODULES = (
    "os os.path json re shutil subprocess pathlib datetime math statistics random itertools "
    "functools collections csv sqlite3 urllib.request http.client email.utils zipfile tarfile "
    "hashlib base64 string textwrap difflib heapq bisect calendar time socket ssl logging "
    "argparse tempfile glob fnmatch gzip uuid decimal fractions operator copy pprint inspect ast "
    "tokenize html xml.etree.ElementTree asyncio threading queue sched contextlib dataclasses "
    "enum typing unicodedata locale gettext platform signal mimetypes webbrowser secrets hmac "
    "ipaddress smtplib ftplib imaplib poplib wave colorsys shelve pickle marshal configparser "
    "plistlib getpass select selectors mmap codecs io struct array weakref types abc numbers "
    "cmath zlib bz2 lzma"
)


def docstrings() -> list[str]:
    """The first paragraph (20-400 characters) of every public callable's docstring."""
    out: dict[str, None] = {}
    for name in MODULES.split():
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for attr, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if callable(obj) and not attr.startswith("_") else None
            para = doc.split("\n\n")[0].replace("\n", " ").strip() if doc else ""
            if 20 <= len(para) <= 400:
                out[para] = None
    return list(out)


def rows(path: Path, limit: int | None = None) -> list[str]:
    texts = [json.loads(line)["text"] for line in path.read_text().split("\n") if line]
    return [t for t in texts if limit is None or len(t) < limit]


async def classify(classifier: EngineClassifier, prompt: str, tools: list[str]) -> Any:
    body: dict[str, Any] = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    if tools:
        body["tools"] = [
            {"type": "function", "function": {"name": f"t{i}", "description": d}}
            for i, d in enumerate(tools)
        ]
    request = parse("chat", json.dumps(body).encode(), max_bytes=1 << 22)
    return await classifier.classify(request), classifier.engine.rows_for(
        request.classifier_messages()
    )


async def with_calls(classifier: EngineClassifier, prompt: str, arguments: list[str]) -> Any:
    """`prompt` asked after a history of tool calls with these argument values (each the JSON
    of one string, `{"query": ...}`) and their results."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    for i, value in enumerate(arguments):
        call = {"name": "search", "arguments": json.dumps({"query": value})}
        messages.append(
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": f"c{i}", "type": "function", "function": call}
            ]}
        )  # fmt: skip
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": "no results"})
    messages.append({"role": "user", "content": "Thanks. Summarize what you found."})
    body = {"model": "auto", "messages": messages}
    return await classifier.classify(parse("chat", json.dumps(body).encode(), max_bytes=1 << 22))


async def run_arguments(args: argparse.Namespace) -> dict[str, Any]:
    """Benign requests whose history holds 1-5 tool calls with benign prompts as their query
    (a proxy: no corpus of real tool calls ships here), flagged as attacks; jailbreaks the
    router blocks alone, planted as one call's query among three, caught."""
    classifier = load_classifier()
    assert classifier is not None, "the shipped model did not load"
    threshold = classifier.attack_threshold
    rng = random.Random(args.seed)
    benign = rows(GUARD / "benign_prompts.jsonl", limit=300)
    rng.shuffle(benign)
    attacks = rows(GUARD / "prompt_attacks.jsonl", limit=600)
    rng.shuffle(attacks)
    n = args.requests
    flagged = 0
    for prompt in benign[:n]:
        values = rng.sample(benign[n:], rng.choice([1, 2, 3, 5]))
        flagged += (await with_calls(classifier, prompt, values)).prompt_attack >= threshold
    blocked_alone = caught = 0
    for attack, prompt in zip(attacks, benign[n:], strict=False):
        if blocked_alone == args.planted:
            break
        if (await with_calls(classifier, attack, [])).prompt_attack < threshold:
            continue
        blocked_alone += 1
        values = rng.sample(benign[n:], 3)
        values[rng.randrange(3)] = attack
        caught += (await with_calls(classifier, prompt, values)).prompt_attack >= threshold
    classifier.close()
    return {
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "model": classifier.engine.spec.version,
        "benign_requests": n,
        "benign_flagged_with_calls": flagged / n,
        "planted_blocked_alone": blocked_alone,
        "planted_caught_as_an_argument": caught,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    classifier = load_classifier()
    assert classifier is not None, "the shipped model did not load"
    threshold = classifier.attack_threshold
    rng = random.Random(args.seed)
    docs = docstrings()
    benign = rows(GUARD / "benign_prompts.jsonl")
    rng.shuffle(benign)
    attacks = rows(GUARD / "prompt_attacks.jsonl", limit=600)
    rng.shuffle(attacks)
    flagged = [0, 0]
    with_pii = [0, 0]
    row_counts: list[tuple[int, int]] = []
    for prompt in benign[: args.requests]:
        tools = rng.sample(docs, rng.choice([1, 3, 5, 10, 20]))
        (alone, rows_alone), (both, rows_both) = [
            await classify(classifier, prompt, t) for t in ([], tools)
        ]
        flagged[0] += alone.prompt_attack >= threshold
        flagged[1] += both.prompt_attack >= threshold
        with_pii[0] += bool(alone.pii)
        with_pii[1] += bool(both.pii)
        row_counts.append((rows_alone, rows_both))
    blocked_alone = caught = 0
    for attack, prompt in zip(attacks, benign[args.requests :], strict=False):
        if blocked_alone == args.planted:
            break
        (alone, _) = await classify(classifier, attack, [])
        if alone.prompt_attack < threshold:
            continue
        blocked_alone += 1
        tools = rng.sample(docs, 5)
        tools[rng.randrange(5)] = attack
        (planted, _) = await classify(classifier, prompt, tools)
        caught += planted.prompt_attack >= threshold
    classifier.close()
    n = args.requests
    return {
        "machine": f"{platform.processor() or platform.machine()}, {platform.python_version()}",
        "model": classifier.engine.spec.version,
        "descriptions": len(docs),
        "benign_requests": n,
        "benign_flagged_without_tools": flagged[0] / n,
        "benign_flagged_with_tools": flagged[1] / n,
        "with_pii_without_tools": with_pii[0] / n,
        "with_pii_with_tools": with_pii[1] / n,
        "mean_rows_without_tools": sum(a for a, _ in row_counts) / n,
        "mean_rows_with_tools": sum(b for _, b in row_counts) / n,
        "planted_blocked_alone": blocked_alone,
        "planted_caught_as_a_description": caught,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--planted", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--arguments", action="store_true", help="tool-call arguments instead of descriptions"
    )
    args = parser.parse_args()
    name = "tool_call_arguments" if args.arguments else "tool_descriptions"
    args.out = args.out or REPO / f"bench/results/{name}.json"
    result = asyncio.run(run_arguments(args) if args.arguments else run(args))
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
