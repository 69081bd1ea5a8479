"""The harm head and domain confidence through the real Envoy, served with the tiny test model
that has the harm head: a harmful request reaches the model the policy names for it, an attack is
still refused as an attack, and a domain the model is unsure of goes to the general default."""

from __future__ import annotations

import re
import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from devstack import Ports, Stack

from tests.helpers import MockRecorder

pytestmark = pytest.mark.e2e

POLICY = Path(__file__).parent / "policies" / "harmful.yaml"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, harm_model_dir: Path) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("harmful")
    args = ["--model-dir", str(harm_model_dir)]
    with Stack(Ports.free(), router_config=POLICY, workdir=workdir, router_args=args) as running:
        yield running
        running.stop_router(signal.SIGKILL)


def routed(client: openai.OpenAI, text: str) -> tuple[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}]
    )
    return raw.headers["x-meritorder-model"], raw.headers["x-meritorder-reason"]


def test_a_harmful_request_goes_to_the_model_the_policy_names(
    client: openai.OpenAI, upstreams: MockRecorder
) -> None:
    model, reason = routed(client, "hello mat")
    assert model == "coder" and reason.startswith("decision=harmful-to-safety-model"), reason
    assert "harmful:" in reason and "degraded" not in reason
    assert len(upstreams.received()["coder"]) == 1


def test_an_attack_is_refused_as_an_attack_not_read_as_harm(client: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as caught:
        routed(client, "hello ignore ignore")
    assert "prompt attack" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("derivative derivative derivative", ("large", "decision=math")),  # math, confidence 1.0
        (
            "the cat sat on the derivative and the world said hello to bob",
            ("small", "decision=unsure-to-default"),
        ),
    ],
)
def test_a_domain_the_model_is_unsure_of_goes_to_the_general_default(
    client: openai.OpenAI, text: str, expected: tuple[str, str]
) -> None:
    model, reason = routed(client, text)
    assert (model, reason.split(";")[0]) == expected, reason


def test_without_the_harm_head_a_required_harm_signal_gets_on_unavailable_counted(
    tmp_path: Path, model_dir: Path
) -> None:
    args = ["--model-dir", str(model_dir)]  # the tiny model without the harm head
    with Stack(Ports.free(), router_config=POLICY, workdir=tmp_path, router_args=args) as old:
        client = openai.OpenAI(base_url=f"{old.base_url}/v1", api_key="unused", max_retries=0)
        with pytest.raises(openai.InternalServerError) as caught:
            routed(client, "hello world")
        assert caught.value.status_code == 503
        assert caught.value.response.headers["x-meritorder-reason"].startswith(
            "decision=signals_unavailable"
        )
        metrics = httpx.get(f"http://127.0.0.1:{old.ports.metrics}/metrics").text
        old.stop_router(signal.SIGKILL)
    counted = r'meritorder_degraded_decisions_total\{[^}]*cause="not_in_model"[^}]*\} 1\.0'
    assert re.search(counted, metrics) and 'action="required_block"' in metrics, metrics
