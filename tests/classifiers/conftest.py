"""Fixtures: a model directory laid out like classifiers/models/, holding the tiny model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from classifiers.engine import SignalEngine
from tests.classifiers.tiny_signals_model import build_model, build_tokenizer, spec_json, tiny_vocab


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory laid out like classifiers/models/, holding the tiny model."""
    directory = tmp_path_factory.mktemp("tiny_model")
    build_tokenizer(directory / "tokenizer.json")
    build_model(directory / "signals.int8.onnx", tiny_vocab())
    (directory / "signals.json").write_text(json.dumps(spec_json()))
    return directory


@pytest.fixture
def engine(model_dir: Path) -> Iterator[SignalEngine]:
    engine = SignalEngine.load(model_dir, force_cpu=True, intra_op_threads=1)
    yield engine
    engine.close()
