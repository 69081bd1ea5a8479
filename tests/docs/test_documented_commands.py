"""Every command block of README.md and docs/*.md runs as written (docs/README convention below).

A fenced block's info string says how it is checked (the convention, also in README.md,
"Commands in these docs"):

- `sh runnable`: run offline by bash (`set -eo pipefail`) in a scratch copy of the repository
  (its top-level entries linked), with `.venv/bin` on PATH.
- `sh stack` / `python stack`: run against the demo stack (`make run`), which this module starts
  on free ports; the documented addresses (`127.0.0.1:PORT` or `localhost:PORT` with the demo's
  10000, 50051, 9464, 9901, 4317 and the mocks' 8101-8103) are rewritten to the session's.
- `sh cluster`: needs Kubernetes or a container engine; `sh slow`: too slow or long-running for
  `make test` (`make run`, `make bench`, a full `eval`). Both are syntax-checked (`bash -n`).
- `exit=N` after the tag: the exit status the block ends with (default 0).
- A `text output` block right after a runnable or stack block (the next fenced block) is what the
  command prints, stdout and stderr together: the output must be exactly these lines, where
  `...` within a line stands for any text and a line of only `...` for any number of lines.

Every shell and Python block carries one of these tags, and every output block follows a block
that runs: a block nobody checks fails here.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from devstack import Ports, Stack  # `stack`: tests/docs/conftest.py

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELLS = {"sh", "bash", "shell", "console"}
RUNS = {"runnable", "stack"}
CHECKED = {"cluster", "slow"}
TIMEOUT_S = 120
FENCE = re.compile(r"^(?P<indent> *)```(?P<info>[^`]*)$")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    tags: tuple[str, ...]
    text: str
    output: Block | None = None

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}:{self.line}"

    @property
    def kind(self) -> str | None:
        return next((t for t in self.tags if t in RUNS | CHECKED), None)

    @property
    def exit_status(self) -> int:
        return next((int(t[5:]) for t in self.tags if t.startswith("exit=")), 0)


def fenced_blocks(path: Path) -> Iterator[Block]:
    """Each fenced block of a Markdown file, indented ones (inside list items) included."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent = len(opening["indent"])
        words = opening["info"].split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(
                lines[j][indent:] if lines[j].startswith(" " * indent) else lines[j].lstrip()
            )
            j += 1
        language = words[0] if words else ""
        yield Block(path, i + 1, language, tuple(words[1:]), "\n".join(body) + "\n")
        i = j + 1


def documented_blocks() -> list[Block]:
    """Command blocks, each with the output block that follows it."""
    found: list[Block] = []
    for path in DOCS:
        blocks = list(fenced_blocks(path))
        for block, after in zip(blocks, [*blocks[1:], None], strict=False):
            if block.language in SHELLS or block.language == "python":
                shown = after if after is not None and after.tags == ("output",) else None
                found.append(dataclasses.replace(block, output=shown))
    return found


BLOCKS = documented_blocks()


def test_every_command_block_says_how_it_is_checked() -> None:
    untagged = [b.where for b in BLOCKS if b.kind is None]
    assert not untagged, f"tag these blocks runnable, stack, cluster or slow: {untagged}"
    python_unchecked = [b.where for b in BLOCKS if b.language == "python" and b.kind in CHECKED]
    assert not python_unchecked, f"Python blocks run (runnable or stack): {python_unchecked}"


def test_every_output_block_follows_a_command_that_runs() -> None:
    outputs = [b for p in DOCS for b in fenced_blocks(p) if b.tags == ("output",)]
    shown = {b.output.where for b in BLOCKS if b.output is not None and b.kind in RUNS}
    orphans = [b.where for b in outputs if b.where not in shown]
    assert outputs and not orphans, f"output blocks after no runnable or stack block: {orphans}"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind in CHECKED], ids=lambda b: b.where)
def test_cluster_and_slow_commands_are_valid_shell(block: Block) -> None:
    checked = subprocess.run(["bash", "-n"], input=block.text, capture_output=True, text=True)
    assert checked.returncode == 0, f"{block.where}: {checked.stderr}"


@pytest.mark.parametrize(
    "block", [b for b in BLOCKS if b.kind == "runnable"], ids=lambda b: b.where
)
def test_offline_commands_run_as_written(block: Block, scratch: Path) -> None:
    check(block, run(block, scratch, {}))


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.kind == "stack"], ids=lambda b: b.where)
def test_demo_stack_commands_run_as_written(block: Block, scratch: Path, stack: Stack) -> None:
    check(block, run(block, scratch, session_addresses(stack.ports)))


def test_documented_addresses_are_rewritten_to_the_session_ports() -> None:
    ports = Ports(listener=1, router=2, admin=3, mocks={"small": 4}, otlp=5, metrics=6)
    assert rewrite(
        "curl localhost:10000/v1 http://127.0.0.1:9464/metrics 127.0.0.1:8101 8080:80",
        session_addresses(ports),
    ) == ("curl 127.0.0.1:1/v1 http://127.0.0.1:6/metrics 127.0.0.1:4 8080:80")


def test_output_shape_matches_lines_and_elisions() -> None:
    shown = "a: 2 problem(s)\n  - x...\n...\nend\n"
    assert matches(shown, "a: 2 problem(s)\n  - x: unknown\nmore\nlines\nend\n")
    assert not matches(shown, "a: 3 problem(s)\n  - x: unknown\nend\n")
    assert not matches(shown, "a: 2 problem(s)\n  - x: unknown\nend\ntrailing\n")


# -- How blocks run and how their output is compared.


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository's top-level entries linked into a fresh directory: relative paths work,
    and what the commands write (plots, JSON) lands here, not in the checkout."""
    root = tmp_path_factory.mktemp("docs")
    for entry in REPO.iterdir():
        if entry.name != ".git":
            (root / entry.name).symlink_to(entry)
    return root


def session_addresses(ports: Ports) -> dict[int, int]:
    """Documented port -> this session's port."""
    documented = Ports()
    mapping = {
        documented.listener: ports.listener,
        documented.router: ports.router,
        documented.admin: ports.admin,
        documented.metrics: ports.metrics,
        documented.otlp: ports.otlp,
    }
    mapping.update({documented.mocks[m]: p for m, p in ports.mocks.items()})
    return mapping


def rewrite(text: str, ports: dict[int, int]) -> str:
    def swap(match: re.Match[str]) -> str:
        port = int(match["port"])
        if port not in ports:
            return match[0]
        return f"127.0.0.1:{ports[port]}"

    return re.sub(r"\b(?:127\.0\.0\.1|localhost):(?P<port>\d{4,5})\b", swap, text)


def run(block: Block, cwd: Path, ports: dict[int, int]) -> subprocess.CompletedProcess[str]:
    source = rewrite(block.text, ports)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("OTEL_EXPORTER_OTLP_ENDPOINT", None)
    if block.language == "python":
        command = [sys.executable, "-c", source]
    else:
        command = ["bash", "-eo", "pipefail", "-c", source]
    return subprocess.run(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=TIMEOUT_S,
    )


def check(block: Block, done: subprocess.CompletedProcess[str]) -> None:
    assert done.returncode == block.exit_status, (
        f"{block.where} exited {done.returncode} (the doc says {block.exit_status}):\n{done.stdout}"
    )
    if block.output is not None:
        assert matches(block.output.text, done.stdout), (
            f"{block.where}: the output is not what {block.output.where} shows:\n{done.stdout}"
        )


def matches(shown: str, actual: str) -> bool:
    """Whether `actual` has the shape of `shown` (see the module doc)."""
    pattern = ""
    for line in shown.splitlines():
        if line.strip() == "...":
            pattern += r"(?:[^\n]*\n)*?"
        else:
            pattern += ".*?".join(re.escape(part) for part in line.rstrip().split("...")) + r"\n"
    text = "".join(line.rstrip() + "\n" for line in actual.splitlines())
    return re.fullmatch(pattern, text) is not None
