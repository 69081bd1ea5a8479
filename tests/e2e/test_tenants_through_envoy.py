"""Tenant budgets through the real Envoy: only a verified JWT names a tenant, and nothing a client
sends in headers buys more than the shared unverified budget. Upstreams are MOCKS that record
what they received; streamed requests that ask for no usage chunk (`stream_options.include_usage:
false`), so no usage comes back to change the estimated charges."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from demo.mint_token import ISSUER, KEY_ID, TOKEN_HEADER, mint_token
from devstack import Ports, Stack

from tests.helpers import REPO, MockRecorder, stack_serving

pytestmark = pytest.mark.e2e

POLICY = Path(__file__).parent / "policies" / "tenants.yaml"
# "hi" with max_tokens 999: 1000 estimated tokens, 0.003 cost units on large, 0.001 on small.
PREMIUM = {
    "model": "large",
    "max_tokens": 999,
    "stream": True,
    "stream_options": {"include_usage": False},
    "messages": [{"role": "user", "content": "hi"}],
}


stack = stack_serving(POLICY)


@pytest.fixture
def fresh(stack: Stack, upstreams: MockRecorder) -> MockRecorder:
    """A new router process: every budget starts unspent (the store is in memory)."""
    stack.stop_router(signal.SIGKILL)
    stack.start_router()
    return upstreams


def post(stack: Stack, headers: list[tuple[str, str]] | dict[str, str]) -> httpx.Response:
    return httpx.post(f"{stack.base_url}/v1/chat/completions", json=PREMIUM, headers=headers)


def served_by(response: httpx.Response) -> str | int:
    """The model that served a request, or the status of one that was not served."""
    if response.status_code != 200:
        return response.status_code
    return response.headers["x-meritorder-model"]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, object], claims: dict[str, object], signature: str) -> str:
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}.{signature}"


def claims(tenant: str) -> dict[str, object]:
    return {"iss": ISSUER, "aud": "meritorder", "tenant": tenant, "exp": int(time.time()) + 600}


def forged_tokens() -> dict[str, str]:
    """Tokens for tenant acme that Envoy must refuse, each a different way to forge one."""
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other_pem = other_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # alg confusion: HS256 "signed" with the demo public key, as if it were a shared secret.
    jwks = REPO.joinpath("deploy", "demo", "tenant-demo-jwks.json").read_bytes()
    hs_header = {"alg": "HS256", "typ": "JWT", "kid": KEY_ID}
    hs_body = unsigned(hs_header, claims("acme"), "").rstrip(".")
    hs256 = f"{hs_body}.{b64(hmac.new(jwks, hs_body.encode(), hashlib.sha256).digest())}"
    return {
        "garbage": "not-a-jwt",
        "expired": mint_token("acme", ttl_s=-3600),  # past Envoy's 60 s clock skew
        "signed by another key": mint_token("acme", key=other_pem),
        "alg none": unsigned({"alg": "none", "typ": "JWT"}, claims("acme"), ""),
        "alg none, signature kept": unsigned(
            {"alg": "none", "typ": "JWT", "kid": KEY_ID},
            claims("acme"),
            mint_token("acme").rsplit(".", 1)[1],
        ),
        "alg HS256 with the public key": hs256,
        "claims edited after signing": ".".join(
            [
                mint_token("globex").split(".")[0],
                b64(json.dumps(claims("acme")).encode()),
                mint_token("globex").split(".")[2],
            ]
        ),
        "wrong audience": mint_token("acme", extra={"aud": "someone-else"}),
        "wrong issuer": mint_token("acme", extra={"iss": "someone-else"}),
        "no expiry": mint_token("acme", extra={"exp": None}),
    }


def test_forged_tenant_tokens_are_refused_with_json_and_reach_no_model(
    stack: Stack, upstreams: MockRecorder
) -> None:
    for name, token in forged_tokens().items():
        response = post(stack, {TOKEN_HEADER: token})
        assert response.status_code in (401, 403), name
        assert response.headers["content-type"].startswith("application/json"), name
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("authentication_error", "invalid_token"), name
        assert error["message"].startswith("The tenant token was rejected"), name
    assert all(seen == [] for seen in upstreams.received().values())


def test_no_header_trick_spends_more_than_the_shared_unverified_budget(
    stack: Stack, fresh: MockRecorder
) -> None:
    tricks: list[list[tuple[str, str]]] = [
        [],
        [("x-tenant", "acme")],
        [("x-meritorder-tenant", "acme")],
        [("X-Meritorder-Tenant", "ACME")],
        [("x-meritorder-tenant", "acme"), ("x-meritorder-tenant", "globex")],
        [("x-meritorder-tenant", "brand-new-tenant")],
        # Verified tokens whose tenant is no valid name, or no tenant at all.
        [(TOKEN_HEADER, mint_token(None))],
        [(TOKEN_HEADER, mint_token("\u0430\u0441\u043c\u0435"))],  # Cyrillic look-alikes of "acme"
        [(TOKEN_HEADER, mint_token("acme\u200b"))],  # a zero-width space
        [(TOKEN_HEADER, mint_token("a" * 65))],
        # A spoofed tenant header next to a token without a tenant: still unverified.
        [(TOKEN_HEADER, mint_token(None)), ("x-meritorder-tenant", "acme")],
    ]
    served = [served_by(post(stack, headers)) for headers in tricks]
    # One premium request fits the unverified budget of 0.003; every other one steps down.
    assert served == ["large"] + ["small"] * (len(tricks) - 1)
    assert len(fresh.received()["large"]) == 1


def test_a_verified_tenant_gets_its_own_limit_however_its_name_is_spelled(
    stack: Stack, fresh: MockRecorder
) -> None:
    spellings = ["acme", "ACME", "\uff21\uff23\uff2d\uff25", " Acme ", "acme"]  # full-width ACME
    served = [served_by(post(stack, {TOKEN_HEADER: mint_token(name)})) for name in spellings]
    assert served == ["large", "large", "large", "small", "small"]  # acme's limit: 0.009
    # The unverified budget was not touched, and a new verified tenant has default_limit (2).
    assert served_by(post(stack, {})) == "large"
    newcomer = [served_by(post(stack, {TOKEN_HEADER: mint_token("newco")})) for _ in range(3)]
    assert newcomer == ["large", "large", "small"]
    assert len(fresh.received()["large"]) == 3 + 1 + 2


def test_concurrent_requests_cannot_overspend_a_budget(stack: Stack, fresh: MockRecorder) -> None:
    acme = mint_token("acme")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as client:
            sends = [
                client.post("/v1/chat/completions", json=PREMIUM, headers=headers)
                for headers in [{}] * 20 + [{TOKEN_HEADER: acme}] * 20
            ]
            return await asyncio.gather(*sends)

    served = [served_by(r) for r in asyncio.run(burst())]
    # All 40 are served; the premium model saw exactly what the budgets allow: 1 + 3.
    assert served.count("large") == 4 and served.count("small") == 36
    assert len(fresh.received()["large"]) == 4


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The demo stack exactly as shipped: deploy/config.yaml behind deploy/envoy/envoy.yaml."""
    with Stack(Ports.free(), workdir=tmp_path_factory.mktemp("shipped")) as running:
        yield running
        running.stop_router(signal.SIGKILL)


def test_the_shipped_configs_hold_unverified_spending_to_its_budget(shipped: Stack) -> None:
    # deploy/config.yaml: unverified requests share 30 cost units, acme has 6. This request is
    # estimated at 1 + 999999 tokens: 3 units on large, 0.1 on small.
    body = {**PREMIUM, "max_tokens": 999_999}
    recorder = MockRecorder(shipped)
    recorder.clear()

    def send(headers: list[tuple[str, str]]) -> str | int:
        url = f"{shipped.base_url}/v1/chat/completions"
        return served_by(httpx.post(url, json=body, headers=headers, timeout=30))

    anonymous = [send([]) for _ in range(11)]
    assert anonymous == ["large"] * 10 + ["small"]
    spoofed = [
        send(headers)
        for headers in (
            [("x-tenant", "acme")],
            [("x-meritorder-tenant", "acme")],
            [("X-MERITORDER-TENANT", "globex")],
            [(TOKEN_HEADER, mint_token("acme", ttl_s=-3600))],
        )
    ]
    assert spoofed == ["small", "small", "small", 401]
    assert len(recorder.received()["large"]) == 10
    # A verified tenant still has its own budget.
    assert send([(TOKEN_HEADER, mint_token("acme"))]) == "large"


def test_unverified_requests_can_be_refused_with_a_json_401(
    stack: Stack, upstreams: MockRecorder, tmp_path: Path
) -> None:
    refusing = tmp_path / "refusing.yaml"
    refusing.write_text(POLICY.read_text().replace("unverified_limit: 0.003", "unverified: refuse"))
    stack.stop_router(signal.SIGKILL)
    stack.router_config = refusing
    try:
        stack.start_router()
        for headers in ({}, {"x-meritorder-tenant": "acme"}, {TOKEN_HEADER: mint_token(None)}):
            response = post(stack, headers)
            assert response.status_code == 401
            error = response.json()["error"]  # the router's own error, not rewritten by Envoy
            assert (error["type"], error["code"]) == ("authentication_error", "tenant_required")
        assert served_by(post(stack, {TOKEN_HEADER: mint_token("acme")})) == "large"
        assert sum(len(seen) for seen in upstreams.received().values()) == 1
    finally:
        stack.stop_router(signal.SIGKILL)
        stack.router_config = POLICY
        stack.start_router()
