"""Traffic nobody here wrote, replayed through the real Envoy: the recorded OpenAI requests of
envoyproxy/ai-gateway's and pydantic/pydantic-ai's test cassettes, plus hand-made requests that
use every documented field (tests/data/recorded/README.md). Upstreams are MOCKS.

Each served request (POST to the five API paths of meritorder.endpoints.SPECS) is sent with
`model` set to `auto` and to each configured model that serves its API, and must pass four
checks:

  (a) the mock named by `x-meritorder-model` receives it, alone, on the same path, with the body
      unchanged (as parsed JSON: the router re-serializes) except `model`, which becomes the
      upstream id, and the decision's documented steps (the demo policy has one: `reasoning`
      sets `reasoning_effort: high` on `large`), the budget's completion cap, and an OpenAI
      stream's `stream_options.include_usage` (README, "APIs");
  (b) a stream (`stream: true`) arrives whole: SSE ending with the API's last event;
  (c) the decision headers are on the response (routed or refused by policy; a 400 for malformed
      input is decided before any policy and carries none);
  (d) a request the provider itself rejected (a 4xx cassette) gets a 4xx JSON error from the
      router when the router can tell it is malformed (`messages` empty or null content), and is
      otherwise forwarded unchanged: the model name was its only fault, and the replay replaces
      it, or its fault is a sampling range (negative max_tokens, temperature 3) or a feature
      the named model lacks (a developer turn for o1-mini), which the provider judges.
      `REJECTED` pins which is which; the cassettes whose only fault is an unknown model are
      also sent with that model and get the router's 404.

Known false positives of the attack head are asserted as they are, by name, not skipped: with
`model: auto` they are refused with 403 (`KNOWN_FALSE_POSITIVES`; measured in
classifiers/models/MODEL_CARD.md, "Benign creative requests with forced tools").

Requests for APIs the router does not serve (images, audio, Azure-style paths) are not
routed: they get the catch-all's JSON 404 and reach no upstream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from devstack import Stack

from meritorder.config import Api, RouterConfig, load_config
from meritorder.endpoints import spec_for
from tests.helpers import DEMO_CONFIG, REPO, stack_serving

pytestmark = pytest.mark.e2e

RECORDED = REPO.joinpath("tests", "data", "recorded")
CONFIG: RouterConfig = load_config(DEMO_CONFIG)
# The demo policy, waiting as long as it takes for the attack and harm signals: some recorded
# requests are several KB, and what is asserted is their decision, not how fast it was made.
stack = stack_serving(DEMO_CONFIG, patient=True)


def api_of(path: str) -> Api | None:
    spec = spec_for("POST", path)
    return spec.api if spec else None


def targets(api: Api) -> list[str]:
    """`auto` and every configured model serving `api`. Embeddings are sent to the embedding
    models by name only: `auto` on embeddings is the policy's API filter's to resolve
    (meritorder/policy: a model whose `apis` lacks the request's API is never chosen)."""
    virtual = [] if api == "embeddings" else list(CONFIG.virtual_models)
    return [*virtual, *(m.name for m in CONFIG.models if api in m.apis)]


# What the last event of a whole stream is, per API.
LAST_EVENT = {
    "chat": "data: [DONE]",
    "completions": "data: [DONE]",
    "responses": "event: response.completed",
    "messages": "event: message_stop",
}

# Provider-rejected requests: (router status, error param) when the router rejects them itself,
# None when it forwards them unchanged for the provider to judge.
REJECTED: dict[str, tuple[int, str] | None] = {
    "chat-bad-request": (400, "messages[0].content"),  # null user content
    "chat-no-messages": (400, "messages"),  # empty messages
    "chat-unknown-model": None,  # only the model was wrong: replaced by the replay
    "completion-unknown-model": None,
    "completion-bad-request": None,  # max_tokens -1, temperature 3: the provider's ranges
    # What a given model supports is the provider's to judge:
    "test_openai_o1_mini_system_role-developer": None,  # o1-mini refused a developer turn
    "test_openai_web_search_tool_model_not_supported": None,  # gpt-4o refused web_search_options
    "embeddings-bad-request": None,  # `dimensions` the named model lacks
    "embeddings-unknown-model": None,
}
# Known false positives of the shipped attack head (`model: auto` is refused): name -> the attack
# score measured alone by `python -m classifiers.training.runtime_eval --benign-creative`
# (metrics.json `runtime_benign_creative`). Model 1.1.0 (stage 3, issue 15) no longer flags
# `chat-text-to-image-tool` (0.852 under 1.0.0) nor `test_openai_model_thinking_part-1` (0.158);
# model 1.2.0 (stage 4, issue 11) no longer flags `chat-predicted-output` (0.746 under 1.1.0).
KNOWN_FALSE_POSITIVES: dict[str, float] = {}
METRICS = REPO.joinpath("classifiers", "models", "metrics.json")


@dataclass(frozen=True)
class Recorded:
    name: str
    source: str
    method: str
    path: str
    content_type: str
    status: int  # what the provider answered (200 for hand-made requests)
    body: str

    @classmethod
    def load(cls, path: Path) -> Recorded:
        return cls(**json.loads(path.read_text(encoding="utf-8")))

    def json(self) -> dict[str, Any]:
        parsed = json.loads(self.body)
        assert isinstance(parsed, dict)
        return parsed


ALL = [Recorded.load(p) for p in sorted(RECORDED.glob("*/*.json"))]
SERVED_OK = [r for r in ALL if api_of(r.path) and r.status < 400]
SERVED_REJECTED = [r for r in ALL if api_of(r.path) and r.status >= 400]
NOT_SERVED = [r for r in ALL if not api_of(r.path)]


def each_target(records: list[Recorded]) -> list[Any]:
    return [
        pytest.param(r, t, id=f"{r.name}-{t}")
        for r in records
        for t in targets(api_of(r.path))  # type: ignore[arg-type]
    ]


class Replay:
    """One keep-alive client for the router and the mocks: a few hundred sends stay quick."""

    def __init__(self, stack: Stack, session: httpx.Client) -> None:
        self.stack, self.session = stack, session

    def send(self, record: Recorded, body: bytes) -> httpx.Response:
        return self.session.request(
            record.method,
            f"{self.stack.base_url}{record.path}",
            content=body,
            headers={"content-type": record.content_type},
        )

    def clear(self) -> None:
        for model in self.stack.ports.mocks:
            self.session.delete(f"{self.stack.mock_url(model)}/__mock/requests")

    def received(self) -> dict[str, list[dict[str, Any]]]:
        """What each mock received since `clear`, for the mocks that received anything."""
        seen = {
            m: self.session.get(f"{self.stack.mock_url(m)}/__mock/requests").json()
            for m in self.stack.ports.mocks
        }
        return {m: r for m, r in seen.items() if r}


@pytest.fixture(scope="module")
def session() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def replay(stack: Stack, session: httpx.Client) -> Replay:
    replaying = Replay(stack, session)
    replaying.clear()
    return replaying


def _send(replay: Replay, record: Recorded, body: dict[str, Any]) -> httpx.Response:
    return replay.send(record, json.dumps(body).encode())


def _expected_upstream_body(
    sent: dict[str, Any], decision: str, model: str, api: Api | None
) -> dict[str, Any]:
    """What the upstream must receive: `sent` with the upstream model id and the decision's
    documented steps (only those the demo policy uses; anything else fails here first)."""
    chosen = CONFIG.model(model)
    assert chosen is not None and api is not None
    expected = {**sent, "model": chosen.upstream_model}
    # The demo budgets every request (unverified ones share one budget) and caps an answer
    # that asked for no length at the completion tokens it was charged for, in the API's field
    # (Messages requires max_tokens; embeddings generate none).
    assert CONFIG.budgets is not None and CONFIG.budgets.cap_completion
    caps = {"chat": ("max_tokens", "max_completion_tokens"), "completions": ("max_tokens",)}
    caps["responses"] = ("max_output_tokens",)
    keys = caps.get(api)
    if keys and not any(k in sent for k in keys):
        expected[keys[0]] = CONFIG.budgets.completion_tokens_estimate
    options = sent.get("stream_options")
    if (
        sent.get("stream")
        and api in ("chat", "completions")
        and "include_usage" not in (options or {})
    ):
        expected["stream_options"] = {**(options or {}), "include_usage": True}
    rule = next((d for d in CONFIG.decisions if d.name == decision), None)
    if rule is None:  # default / explicit: no steps
        return expected
    assert rule.system_prompt is None and rule.max_tokens is None and rule.pii is None, (
        f"decision {decision!r} has steps this replay does not model yet"
    )
    if rule.reasoning is not None and chosen.reasoning_family == "reasoning_effort":
        effort = rule.reasoning.effort if rule.reasoning.enabled else "low"
        if api == "responses":
            expected["reasoning"] = {**sent.get("reasoning", {}), "effort": effort}
        elif api != "messages":
            expected["reasoning_effort"] = effort
        elif not rule.reasoning.enabled:
            expected["thinking"] = {"type": "disabled"}
        elif sent["max_tokens"] > 1024:
            budget = {"low": 1024, "medium": 4096, "high": 16384}[effort]
            expected["thinking"] = {
                "type": "enabled",
                "budget_tokens": min(budget, sent["max_tokens"] - 1),
            }
    return expected


def _assert_decision_headers(response: httpx.Response) -> None:
    for header in ("x-meritorder-decision", "x-meritorder-reason"):
        assert response.headers.get(header), f"{header} missing: {dict(response.headers)}"


def _assert_json_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    if response.json().get("type") == "error":  # Anthropic's shape, on /v1/messages
        assert set(error) == {"type", "message"} and error["message"]
        return {**error, "param": None, "code": None}
    assert set(error) >= {"message", "type", "param", "code"} and error["message"]
    return dict(error)


def mock_of(model: str) -> str:
    """The MOCK behind a model's cluster (`embed` shares mock-small)."""
    chosen = CONFIG.model(model)
    assert chosen is not None
    return chosen.cluster.removeprefix("mock-")


def _assert_forwarded(
    response: httpx.Response, replay: Replay, record: Recorded, sent: dict[str, Any]
) -> None:
    """Checks (a), (b), (c) for a request the router routes."""
    assert response.status_code == 200, response.text
    _assert_decision_headers(response)
    model = response.headers["x-meritorder-model"]
    mock = mock_of(model)
    received = replay.received()
    assert list(received) == [mock] and len(received[mock]) == 1, received
    (seen,) = received[mock]
    assert seen["path"] == record.path
    upstream_body = json.loads(str(seen["body"]))
    decision = response.headers["x-meritorder-decision"]
    api = api_of(record.path)
    assert upstream_body == _expected_upstream_body(sent, decision, model, api)
    if sent.get("stream"):
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [e for e in response.text.split("\n\n") if e.strip()]
        assert api is not None and len(events) > 2, response.text
        assert events[-1].startswith(LAST_EVENT[api]), response.text
    else:
        assert response.json()["model"] == upstream_body["model"]


@pytest.mark.parametrize(("record", "target"), each_target(SERVED_OK))
def test_recorded_request_reaches_its_model_unchanged_but_for_the_decision(
    replay: Replay, record: Recorded, target: str
) -> None:
    sent = {**record.json(), "model": target}
    response = _send(replay, record, sent)
    if target in CONFIG.virtual_models and record.name in KNOWN_FALSE_POSITIVES:
        # Defect, measured not hidden: the attack head refuses this benign request.
        error = _assert_json_error(response, 403)
        _assert_decision_headers(response)
        assert response.headers["x-meritorder-decision"] == "refuse-attacks", error
        assert not replay.received()
        return
    _assert_forwarded(response, replay, record, sent)


def test_the_reasoning_step_is_the_only_change_to_a_request_routed_for_reasoning(
    replay: Replay,
) -> None:
    """The one documented step of the demo policy really happens in the replay: the client's
    `reasoning_effort: low` becomes `high` on `large`, and nothing else changes."""
    (record,) = [r for r in ALL if r.name == "chat-streaming-forced-tool-reasoning"]
    sent = {**record.json(), "model": "auto"}
    response = _send(replay, record, sent)
    assert (response.headers["x-meritorder-decision"], response.headers["x-meritorder-model"]) == (
        "reasoning",
        "large",
    )
    (seen,) = replay.received()["large"]
    assert json.loads(seen["body"]) == {
        **sent,
        "model": "mock/large-70b",
        "reasoning_effort": "high",
    }


@pytest.mark.parametrize(("record", "target"), each_target(SERVED_REJECTED))
def test_request_the_provider_rejected_is_rejected_or_forwarded_unchanged(
    replay: Replay, record: Recorded, target: str
) -> None:
    sent = {**record.json(), "model": target}
    response = _send(replay, record, sent)
    outcome = REJECTED[record.name]
    if outcome is None:
        _assert_forwarded(response, replay, record, sent)
        return
    status, param = outcome
    assert _assert_json_error(response, status)["param"] == param
    assert not replay.received()


@pytest.mark.parametrize(
    "record", [r for r in SERVED_REJECTED if r.status == 404], ids=lambda r: r.name
)
def test_recorded_unknown_model_gets_the_routers_404(replay: Replay, record: Recorded) -> None:
    error = _assert_json_error(_send(replay, record, record.json()), 404)
    assert error["param"] == "model" and error["code"] == "model_not_found"
    assert not replay.received()


@pytest.mark.parametrize("record", NOT_SERVED, ids=lambda r: r.name)
def test_request_for_an_api_not_served_gets_the_catch_all_404(
    replay: Replay, record: Recorded
) -> None:
    response = replay.send(record, record.body.encode())
    assert _assert_json_error(response, 404)["code"] == "not_found"
    assert not replay.received()


def test_the_replay_covers_every_shape_it_claims() -> None:
    """The data really holds what the docstring promises: streams, every prompt shape, the
    image-tool false positive, provider-rejected requests and APIs not served."""
    names = {r.name for r in ALL}
    prompts = [r.json()["prompt"] for r in SERVED_OK if r.path == "/v1/completions"]
    shapes = {"string" if isinstance(p, str) else f"list of {type(p[0]).__name__}" for p in prompts}
    assert shapes == {"string", "list of str", "list of int", "list of list"}
    for api in ("chat", "completions"):
        assert any(r.json().get("stream") for r in SERVED_OK if api_of(r.path) == api), api
    assert {"embeddings", "responses"} <= {api_of(r.path) for r in SERVED_OK}
    assert set(KNOWN_FALSE_POSITIVES) <= names and set(REJECTED) == {
        r.name for r in SERVED_REJECTED
    }
    assert {"/v1/images/generations", "/v1/audio/transcriptions"} <= {
        r.path.split("?")[0] for r in NOT_SERVED
    }


def test_known_false_positives_are_the_ones_measured_in_the_model_card() -> None:
    """The replay's list and the card's measurement (metrics.json) name the same requests with
    the same scores, so neither can drift from the other."""
    flagged = json.loads(METRICS.read_text())["runtime_benign_creative"]["flagged"]
    measured = {
        k.removeprefix("recorded:"): v for k, v in flagged.items() if k.startswith("recorded:")
    }
    assert measured == KNOWN_FALSE_POSITIVES
