"""`meritorder classify`: the command-line contract over the classifier runtime."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.cli import main


def test_classify_writes_the_contract_fields_per_line_and_an_error_for_bad_lines(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    lines = [
        {"id": "t", "text": "mail alice@example.com about the invoice"},
        {
            "id": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": "my ssn is 123-45-6789"},
            ],
        },
    ]
    source.write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken\n")
    out = tmp_path / "out.jsonl"
    args = [
        "classify",
        "--model-dir",
        str(model_dir),
        "--cpu",
        "--input",
        str(source),
        "--output",
        str(out),
    ]
    assert main(args) == 0
    text_line, messages_line, bad = (json.loads(x) for x in out.read_text().splitlines())
    keys = {"id", "domain", "prompt_attack", "pii", "difficulty", "tokens", "latency_ms"}
    assert set(text_line) == keys and set(messages_line) == keys
    assert (
        set(text_line["domain"]) == {"label", "scores"} and len(text_line["domain"]["scores"]) == 14
    )
    assert set(text_line["prompt_attack"]) == {"score", "flagged"}
    email = next(p for p in text_line["pii"] if p["type"] == "EMAIL_ADDRESS")
    assert lines[0]["text"][email["start"] : email["end"]] == "alice@example.com"
    ssn = next(p for p in messages_line["pii"] if p["type"] == "US_SSN")
    assert (ssn["message"], ssn["start"], ssn["end"]) == (1, 10, 21)
    assert bad["id"] is None and "invalid JSON" in bad["error"]
    assert "could not be classified" in capsys.readouterr().err


def test_classify_without_a_model_explains_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["classify", "--model-dir", str(tmp_path), "--input", "-"]) == 2
    assert "cannot load the classifier model" in capsys.readouterr().err
