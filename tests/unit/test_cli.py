"""The offline commands: `meritorder route` (the batch contract) and `meritorder explain`."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from meritorder.cli import main
from tests.conftest import DEMO_CONFIG


def test_route_writes_one_decision_per_line_and_reports_bad_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text(
        "\n".join(
            [
                json.dumps({"id": "a", "text": "fix my python bug"}),
                json.dumps({"id": "b", "messages": [{"role": "user", "content": "hello"}]}),
                "{not json",
                json.dumps({"id": "d", "messages": "nope"}),
                json.dumps({"id": "e", "text": "hi", "model": "ghost"}),
            ]
        )
    )
    out = tmp_path / "out.jsonl"
    assert (
        main(["route", "--config", str(DEMO_CONFIG), "--input", str(source), "--output", str(out)])
        == 0
    )
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "b", None, "d", "e"]
    first = lines[0]
    assert set(first) == {"id", "decision", "model", "action", "status", "reason", "signals"}
    assert (first["decision"], first["model"], first["action"], first["status"]) == (
        "code",
        "coder",
        "route",
        200,
    )
    assert first["signals"]["fired"] == {"code": 1.0}
    assert lines[1]["model"] == "small"
    assert "error" in lines[2] and "messages" in lines[3]["error"]
    assert "does not exist" in lines[4]["error"]
    assert "3 line(s) could not be routed" in capsys.readouterr().err


def test_route_reports_blocks_with_a_null_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    policy = tmp_path / "p.yaml"
    block = "  - {name: nope, priority: 999, when: code, block: {status: 451, message: blocked}}\n"
    policy.write_text(DEMO_CONFIG.read_text().replace("decisions:\n", "decisions:\n" + block))
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps({"id": 1, "text": "python"}) + "\n"))
    assert main(["route", "--config", str(policy)]) == 0
    line = json.loads(capsys.readouterr().out)
    assert (line["action"], line["model"], line["status"], line["decision"]) == (
        "block",
        None,
        451,
        "nope",
    )


def test_explain_names_signals_decisions_and_the_result(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--config", str(DEMO_CONFIG), "why is this python function slow"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"\n  code +keyword +fired 1.000\n", out)
    assert re.search(r"\n +100  code +WON\n", out)
    assert "result: route to coder" in out
    assert "x-meritorder-reason: decision=code" in out


def test_explain_an_unknown_model_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explain", "--config", str(DEMO_CONFIG), "--model", "nope", "hi"]) == 1
    assert "does not exist" in capsys.readouterr().err
