"""The JSON shape of `Signals`: exactly the fields the CLI and the API promise."""

from __future__ import annotations

from classifiers.signals import (
    AttackSignal,
    DifficultySignal,
    DomainSignal,
    HarmSignal,
    PiiEntity,
    Signals,
)


def signals(*pii: PiiEntity, harmful: HarmSignal | None = None) -> Signals:
    return Signals(
        domain=DomainSignal("math", {"math": 0.9, "law": 0.1}, 0.9),
        prompt_attack=AttackSignal(0.2, False),
        pii=pii,
        difficulty=DifficultySignal(0.7),
        tokens=12,
        harmful=harmful,
    )


def test_signals_json_has_exactly_the_contract_fields() -> None:
    assert signals(PiiEntity("EMAIL_ADDRESS", 3, 18, 0.95, None, "pattern")).to_json() == {
        "domain": {"label": "math", "scores": {"math": 0.9, "law": 0.1}, "confidence": 0.9},
        "prompt_attack": {"score": 0.2, "flagged": False, "read": 1.0, "by": "sequence"},
        "harmful": None,
        "pii": [{"type": "EMAIL_ADDRESS", "start": 3, "end": 18, "score": 0.95}],
        "difficulty": {"score": 0.7},
        "tokens": 12,
    }


def test_the_harm_score_and_its_verdict_are_in_the_json_when_the_model_has_the_head() -> None:
    assert signals(harmful=HarmSignal(0.8, True)).to_json()["harmful"] == {
        "score": 0.8,
        "flagged": True,
    }


def test_pii_json_names_its_message_only_when_it_came_from_chat_messages() -> None:
    entity = PiiEntity("PERSON", 0, 5, 0.8, message=2)
    assert entity.to_json() == {"type": "PERSON", "start": 0, "end": 5, "score": 0.8, "message": 2}
    assert "source" not in entity.to_json()
