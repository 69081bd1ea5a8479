"""bench/admission_storm.py: the hog runs only during its phase, and the table reads the runs."""

from __future__ import annotations

import os
from pathlib import Path

from bench.admission_storm import PHASES, during, table


def children() -> set[int]:
    """The pids of this process's children (every thread's)."""
    tasks = Path(f"/proc/{os.getpid()}/task")
    return {int(pid) for task in tasks.iterdir() for pid in (task / "children").read_text().split()}


def test_the_hog_runs_a_busy_loop_per_core_and_one_more_only_during_its_phase() -> None:
    before = children()
    with during("before"):
        assert children() == before
    with during("hog"):
        assert len(children() - before) == (os.cpu_count() or 1) + 1
    assert children() == before


def test_the_table_gives_each_phase_its_served_rate_and_refused_share() -> None:
    phases = {name: {"rps": 100.0 + i, "degraded_share": i / 10} for i, name in enumerate(PHASES)}
    runs = [{"switch_ms": 5.0, "phases": phases}, {"switch_ms": 5.0, "phases": phases}]
    lines = table(runs).splitlines()
    assert lines[2] == "| switch interval | run | before | hog | after-1 | after-2 |"
    assert lines[4] == "| 5 ms | 1 | 100 (0%) | 101 (10%) | 102 (20%) | 103 (30%) |"
    assert lines[5].startswith("| 5 ms | 2 | ")
