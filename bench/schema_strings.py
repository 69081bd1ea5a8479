"""Benign requests with realistic tool schemas: does reading every schema string (property
names, titles, enum and example items, defaults; `meritorder.endpoints.base.definition_texts`)
make the attack signal flag them?

    PYTHONPATH=. .venv/bin/python bench/schema_strings.py [--out FILE]

120 benign prompts (`benign_prompts.jsonl`, under 600 characters, a seeded shuffle), each sent
on the chat API alone, with five tools whose parameters hold enums, titles, defaults and
examples, and with those tools and a `response_format` schema; the shares the attack signal
flags, through the router's classifier adapter with its defaults. No corpus of real tool
schemas ships here, so these five are written after the providers' own function-calling
examples.
"""

import argparse
import asyncio
import json
import random
from pathlib import Path

from meritorder.classify import load_classifier
from meritorder.endpoints import parse

REPO = Path(__file__).resolve().parent.parent
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {
                        "type": "string",
                        "title": "City",
                        "description": "City name, e.g. Paris",
                    },
                    "unit": {
                        "type": "string",
                        "enum": ["celsius", "fahrenheit"],
                        "default": "celsius",
                    },
                },
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_docs",
            "description": "Search the knowledge base.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string"},
                    "sort": {
                        "type": "string",
                        "enum": ["relevance", "newest", "oldest"],
                        "title": "Sort order",
                    },
                    "limit": {"type": "integer", "default": 10},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "create_ticket",
            "description": "Open a support ticket.",
            "parameters": {
                "type": "object",
                "properties": {
                    "priority": {"type": "string", "enum": ["low", "medium", "high", "urgent"]},
                    "summary": {
                        "type": "string",
                        "examples": ["Login page returns 500", "Invoice total is wrong"],
                    },
                    "category": {
                        "type": "string",
                        "enum": ["billing", "technical", "account", "other"],
                        "default": "other",
                    },
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "send_email",
            "description": "Send an e-mail on the user's behalf.",
            "parameters": {
                "type": "object",
                "properties": {
                    "tone": {
                        "type": "string",
                        "enum": ["formal", "friendly", "neutral"],
                        "title": "Tone of voice",
                    },
                    "signature": {"type": "string", "default": "Best regards"},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "run_sql",
            "description": "Run a read-only SQL query.",
            "parameters": {
                "type": "object",
                "properties": {
                    "dialect": {"type": "string", "enum": ["postgres", "mysql", "sqlite"]},
                    "explain": {"type": "boolean", "default": False},
                },
            },
        },
    },
]
FORMAT = {
    "type": "json_schema",
    "json_schema": {
        "name": "answer",
        "schema": {
            "type": "object",
            "properties": {
                "answer": {"type": "string", "description": "The answer in one paragraph."},
                "confidence": {"type": "string", "enum": ["low", "medium", "high"]},
            },
        },
    },
}
GUARD = REPO / "classifiers" / "training" / "data" / "guard"
prompts = [json.loads(line)["text"] for line in (GUARD / "benign_prompts.jsonl").open()]
random.Random(5).shuffle(prompts)
prompts = [p for p in prompts if len(p) < 600][:120]


async def measure() -> dict[str, int]:
    c = load_classifier(force_cpu=True, pii_second_opinion=True)
    assert c is not None
    flagged = {"none": 0, "tools": 0, "tools+format": 0}
    for p in prompts:
        for k, extra in (
            ("none", {}),
            ("tools", {"tools": TOOLS}),
            ("tools+format", {"tools": TOOLS, "response_format": FORMAT}),
        ):
            body = {"model": "auto", "messages": [{"role": "user", "content": p}], **extra}
            r = parse("chat", json.dumps(body).encode(), max_bytes=1 << 22)
            s = await c.classify(r)
            flagged[k] += s.prompt_attack >= s.attack_threshold
    return flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {"requests": len(prompts), "flagged": asyncio.run(measure())}
    print(json.dumps(result))
    if args.out is not None:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
