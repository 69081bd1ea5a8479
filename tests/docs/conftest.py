"""The demo stack the documented commands and the dashboard run against."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from devstack import Ports, Stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Not the end-to-end tests' stack: the documented budget example counts acme's spending from
    # zero, so nothing else may have spent it.
    with Stack(Ports.free(), workdir=tmp_path_factory.mktemp("docs-stack")) as running:
        yield running
