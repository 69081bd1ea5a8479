"""Shared fixtures; the helpers they and the tests use are in tests/helpers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from classifiers.engine import SignalEngine
from meritorder.config import RouterConfig, load_config
from tests.classifiers.tiny_signals_model import build_model_dir
from tests.helpers import DEMO_CONFIG, KEYWORDS_CONFIG, RedisServer


@pytest.fixture
def demo_config() -> RouterConfig:
    return load_config(DEMO_CONFIG)


@pytest.fixture
def keywords_config() -> RouterConfig:
    return load_config(KEYWORDS_CONFIG)


@pytest.fixture(autouse=True)
def _fresh_logging() -> Iterator[None]:
    """Commands under test configure structlog globally; give every test the defaults back."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


# -- the tiny signals model (tests/classifiers/, tests/meritorder/test_classify.py) --------------


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like classifiers/models/, holding the tiny model."""
    return build_model_dir(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="session")
def harm_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with the harm head (`harmful_prob`, `thresholds.harmful` 0.5)."""
    return build_model_dir(tmp_path_factory.mktemp("tiny_harm_model"), harm=True)


@pytest.fixture(scope="session")
def segments_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with its token states and a segment head that fires on "ignore"."""
    return build_model_dir(tmp_path_factory.mktemp("tiny_segments_model"), segments=True)


@pytest.fixture
def engine(model_dir: Path) -> Iterator[SignalEngine]:
    engine = SignalEngine.load(model_dir, force_cpu=True, intra_op_threads=1)
    yield engine
    engine.close()
