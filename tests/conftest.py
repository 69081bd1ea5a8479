"""Shared fixtures: policies and processing requests for unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from meritorder.config import RouterConfig, load_config

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "deploy" / "config.yaml"


@pytest.fixture
def demo_config() -> RouterConfig:
    return load_config(DEMO_CONFIG)
