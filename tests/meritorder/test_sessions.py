"""Sessions: which request belongs to which conversation, and when a turn keeps its model."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from meritorder.config import RouterConfig
from meritorder.endpoints import parse
from meritorder.policy import Decision, Note, Observation, PoolState, decide
from meritorder.request import RequestView
from meritorder.router import Router
from meritorder.sessions import (
    InMemorySessions,
    Session,
    SessionsConfig,
    SessionView,
    advance,
    preference,
    session_name,
    user_turn,
)
from meritorder.sessions_redis import RedisSessions
from tests.helpers import KEYWORDS_CONFIG, RedisServer


def chat(*turns: str, system: str | None = None, **extra: Any) -> RequestView:
    """A conversation: user and assistant turns alternating, the last one the user's."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for i, text in enumerate(turns):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    body = {"model": "auto", "messages": messages, **extra}
    return parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)


# -- names ---------------------------------------------------------------------------------------


def test_a_conversations_turns_share_one_name_and_another_conversation_does_not() -> None:
    config = SessionsConfig(key=("conversation",))
    first = session_name(config, chat("fix my python bug", system="be brief"), {}, "")
    third = session_name(
        config, chat("fix my python bug", "done", "thanks", "ok", "more", system="be brief"), {}, ""
    )
    other = session_name(config, chat("write a haiku", system="be brief"), {}, "")
    assert first is not None and first == third and first != other


def test_the_first_source_the_request_has_names_it() -> None:
    config = SessionsConfig(key=("header:x-session-id", "user", "metadata:thread", "conversation"))
    request = chat("hi", user="u-7", metadata={"thread": "t-1"})
    assert "x-session-id" in (session_name(config, request, {"x-session-id": "s1"}, "") or "")
    assert (session_name(config, request, {}, "") or "").endswith("user\x1fu-7")
    no_user = chat("hi", metadata={"thread": "t-1"})
    assert (session_name(config, no_user, {}, "") or "").endswith("t-1")
    assert (
        SessionsConfig(key=("user",))
        and session_name(SessionsConfig(key=("user",)), chat("hi"), {}, "") is None
    )


def test_tenants_never_share_a_session() -> None:
    config = SessionsConfig(key=("user",))
    request = chat("hi", user="u-7")
    assert session_name(config, request, {}, "acme") != session_name(config, request, {}, "globex")


@pytest.mark.parametrize("source", ["cookie", "header:", "metadata", "user:x", "header:a b"])
def test_an_unknown_session_source_is_a_config_error(source: str) -> None:
    with pytest.raises(ValidationError, match="is not a session source"):
        SessionsConfig(key=(source,))


def test_user_turns_are_counted_from_one() -> None:
    config = SessionsConfig(key=("conversation",))
    name = session_name(config, chat("a"), {}, "") or ""
    assert user_turn(chat("a"), name, None) == 1
    assert user_turn(chat("a", "b", "c"), name, None) == 2
    assert user_turn(chat("a"), name, last(turn=3)) == 1  # the same opening, started again


def test_a_session_the_client_names_continues_with_its_newest_message_alone() -> None:
    name = session_name(SessionsConfig(key=("user",)), chat("a", user="u"), {}, "") or ""
    assert user_turn(chat("next", user="u"), name, last(turn=3)) == 4
    assert user_turn(chat("first", user="u"), name, None) == 1


# -- which turn keeps its model ------------------------------------------------------------------


def last(model: str = "coder", priority: float = 100, **changes: Any) -> Session:
    values: dict[str, Any] = {"model": model, "rule": "code", "priority": priority,
                              "cost": 0.5, "turn": 1, **changes}  # fmt: skip
    return Session(**values)


@pytest.mark.parametrize(
    ("config", "view", "priority", "expected"),
    [
        # sticky: a decision of no higher priority keeps the session's model
        (SessionsConfig(), SessionView("s", 2, last()), -math.inf, ("coder", "sticky")),
        (SessionsConfig(), SessionView("s", 2, last()), 100, ("coder", "sticky")),
        # a higher-priority decision may move it
        (SessionsConfig(), SessionView("s", 2, last()), 200, None),
        (SessionsConfig(sticky=False), SessionView("s", 2, last()), -math.inf, None),
        # a first turn starts afresh; a new session has nothing to keep
        (SessionsConfig(), SessionView("s", 1, last()), -math.inf, None),
        (SessionsConfig(), SessionView("s", 3, None), -math.inf, None),
        # escalated at turn 2: held for 2 more turns, even against a higher-priority decision
        (SessionsConfig(sticky=False, stay_escalated=2),
         SessionView("s", 4, last("large", escalated_at=2, turn=3)), 200,
         ("large", "stay_escalated")),
        (SessionsConfig(sticky=False, stay_escalated=2),
         SessionView("s", 5, last("large", escalated_at=2, turn=4)), 200, None),
        (SessionsConfig(sticky=False, stay_escalated="session"),
         SessionView("s", 50, last("large", escalated_at=2, turn=49)), 200,
         ("large", "stay_escalated")),
        # after max_switches, the last model stays whatever fires
        (SessionsConfig(sticky=False, max_switches=2),
         SessionView("s", 6, last(switches=2, turn=5)), 900, ("coder", "max_switches")),
        (SessionsConfig(sticky=False, max_switches=2),
         SessionView("s", 6, last(switches=1, turn=5)), 900, None),
    ],
)  # fmt: skip
def test_when_a_turn_keeps_the_sessions_model(
    config: SessionsConfig, view: SessionView, priority: float, expected: tuple[str, str] | None
) -> None:
    wanted = preference(config, view, priority)
    assert (None if wanted is None else (wanted.model, wanted.why)) == expected


def test_a_session_counts_its_switches_and_remembers_its_escalation() -> None:
    start = advance(SessionView("s", 1, None), "small", "default", -math.inf, 0.1)
    assert (start.model, start.switches, start.escalated_at) == ("small", 0, None)
    up = advance(SessionView("s", 2, start), "large", "reasoning", 90, 3.0)
    assert (up.switches, up.escalated_at, up.priority) == (1, 2, 90)
    stay = advance(SessionView("s", 3, up), "large", "default", -math.inf, 3.0)
    assert (stay.switches, stay.escalated_at, stay.priority, stay.rule) == (1, 2, 90, "reasoning")
    down = advance(SessionView("s", 4, stay), "small", "default", -math.inf, 0.1)
    assert (down.switches, down.escalated_at) == (2, None)
    again = advance(SessionView("s", 1, down), "coder", "code", 100, 0.5)  # a new conversation
    assert (again.switches, again.turn) == (0, 1)


# -- through the router --------------------------------------------------------------------------


@pytest.fixture
def sessions_config() -> RouterConfig:
    return RouterConfig.model_validate(sessions_policy())


def sessions_policy() -> dict[str, Any]:
    """The keyword demo policy, plus a premium tier that a header asks for (priority 50, below
    code's 100), and sessions named by the conversation."""
    config: dict[str, Any] = yaml.safe_load(KEYWORDS_CONFIG.read_text())
    config["signals"].append({"name": "premium", "type": "header", "header": "x-tier"})
    config["decisions"].append(
        {"name": "premium", "priority": 50, "when": "premium", "route": ["large"]}
    )
    config["sessions"] = {"key": ["conversation"]}
    return config


PREMIUM = {"x-tier": "gold"}


async def test_a_conversation_stays_on_its_model_but_follows_a_higher_priority_turn(
    sessions_config: RouterConfig,
) -> None:
    router = Router(sessions_config)
    first = await router.route(chat("write a haiku"), PREMIUM)
    assert (first.chosen and first.chosen.name, first.rule) == ("large", "premium")
    # Turn 2 matches no decision: the default would be small; the session keeps large.
    second = await router.route(chat("write a haiku", "...", "another one"))
    assert (second.chosen and second.chosen.name, second.rule) == ("large", "default")
    assert Note("session", "sticky") in second.notes
    # Turn 3 asks for code, a decision of higher priority than the one that chose large.
    third = await router.route(chat("write a haiku", "...", "another", "...", "fix my python bug"))
    assert third.chosen is not None and third.chosen.name == "coder"
    assert not any(n.kind == "session" for n in third.notes)
    # Another conversation is not held by this one.
    other = await router.route(chat("a limerick", "...", "another one"))
    assert other.chosen is not None and other.chosen.name == "small"


async def test_a_sticky_model_still_passes_every_filter(sessions_config: RouterConfig) -> None:
    router = Router(sessions_config)
    await router.route(chat("write a haiku"), PREMIUM)
    router.health.observe_status("large", 503)
    router.health.observe_status("large", 503)
    second = await router.route(chat("write a haiku", "...", "another one"))
    assert second.chosen is not None and second.chosen.name == "small"
    assert [(r.model, r.filter) for r in second.rejected] == [("large", "health")]


async def test_explicit_models_keep_no_session(sessions_config: RouterConfig) -> None:
    router = Router(sessions_config)
    await router.route(chat("write a haiku"), PREMIUM)
    messages = [{"role": "user", "content": "write a haiku"}, {"role": "assistant", "content": "."},
                {"role": "user", "content": "another one"}]  # fmt: skip
    body = {"model": "small", "messages": messages}
    request = parse("chat", json.dumps(body).encode(), max_bytes=1 << 20)
    decision = await router.route(request)
    assert decision.chosen is not None and decision.chosen.name == "small"
    assert not any(n.kind == "session" for n in decision.notes)


# -- stores --------------------------------------------------------------------------------------


async def test_memory_sessions_expire_when_idle() -> None:
    now = [0.0]
    store = InMemorySessions(clock=lambda: now[0])
    await store.put("s", last(), ttl_s=10)
    assert await store.get("s") == last()
    now[0] = 11.0
    assert await store.get("s") is None


async def test_redis_sessions_are_shared_and_expire(redis_server: RedisServer) -> None:
    one, two = RedisSessions(redis_server.url), RedisSessions(redis_server.url)
    await one.put("s", last(priority=-math.inf, escalated_at=2), ttl_s=60)
    await one.close()  # writes are off the request path: wait for them
    assert await two.get("s") == last(priority=-math.inf, escalated_at=2)
    assert await two.get("other") is None
    await two.close()


async def test_an_unreachable_session_store_decides_the_turn_as_a_first() -> None:
    store = RedisSessions("redis://127.0.0.1:1/0", timeout_s=0.2)
    assert await store.get("s") is None
    await store.put("s", last(), ttl_s=60)
    await store.close()


def test_a_sticky_model_is_chosen_over_the_picker_and_checked_against_the_budget() -> None:
    """With `pick: cheapest`, the session's model still wins while it survives; the budget is
    checked on it (the model that would be chosen), and a budget that cannot pay steps down."""
    values = sessions_policy()
    for rule in values["decisions"]:
        if rule["name"] == "premium":
            rule.update(route=["small", "large"], pick="cheapest")
    values["budgets"] = {"window_s": 60, "default_limit": 1.0, "unverified_limit": 1.0}
    config = RouterConfig.model_validate(values)
    view = SessionView("s", 2, last("large", priority=50, cost=3.0))
    request = chat("write a haiku", "...", "more")

    def decide_with(spent: float) -> Decision:
        obs = Observation(request, {"x-tier": "gold"}, session=view)
        return decide(config, obs, PoolState(tenant_spent=spent))

    rich = decide_with(0.0)
    assert rich.chosen is not None and rich.chosen.name == "large"
    poor = decide_with(1.0 - 1e-6)
    assert poor.chosen is not None and poor.chosen.name == "small"
    assert any(r.model == "large" and r.filter == "budget" for r in poor.rejected)
