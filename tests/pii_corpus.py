"""The PII obfuscation corpus (tests/data/pii_obfuscation.jsonl) and its benign look-alikes
(tests/data/pii_lookalikes.jsonl), shared by the unit and the end-to-end tests.

To grow it, add a line: `id`, the PII `type` the detectors must find, `where` (the path of the
field it sits in, as `RequestView.inspected_texts` names it), a `note`, and the request `body`
without `model`. A look-alike has only `id` and `body`: nothing in it may be flagged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).resolve().parent / "data"


def rows(name: str) -> list[Any]:
    """The corpus `name` as pytest params, one per line, with the row's id as the test id."""
    lines = (DATA / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [pytest.param(row, id=row["id"]) for row in map(json.loads, lines)]


OBFUSCATED = rows("pii_obfuscation")
LOOKALIKES = rows("pii_lookalikes")
