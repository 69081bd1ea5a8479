"""PII glued to other PII, read by the shipped model: each entity is found on its own, none is
lost inside another's span (a name or an address the model read as part of a validated number
used to be dropped with it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from classifiers.engine import SignalEngine


@pytest.fixture(scope="module")
def engine() -> Iterator[SignalEngine]:
    engine = SignalEngine.load(force_cpu=True, pii_second_opinion=True)
    yield engine
    engine.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Wire to Jonathan Whitaker DE89370400440532013000 today",
            {("PERSON", "Jonathan Whitaker"), ("IBAN_CODE", "DE89370400440532013000")},
        ),
        (
            "Deliver to 221 Baker Street London NW1 6XE 4111 1111 1111 1111",
            {
                ("STREET_ADDRESS", "221 Baker Street London NW1 6XE"),
                ("CREDIT_CARD", "4111 1111 1111 1111"),
            },
        ),
        (
            "Contact: Maria Gonzalez+1 415 555 0134, 742 Evergreen Terrace, Springfield, IL 62704",
            {
                ("PERSON", "Maria Gonzalez"),
                ("PHONE_NUMBER", "+1 415 555 0134"),
                ("STREET_ADDRESS", "742 Evergreen Terrace, Springfield, IL 62704"),
            },
        ),
        (
            "Leonard Arntsen\n353 Buerlia 227\nSandefjord, Norway",
            {("PERSON", "Leonard Arntsen")},
        ),
    ],
)
def test_each_of_two_glued_entities_is_found(
    engine: SignalEngine, text: str, expected: set[tuple[str, str]]
) -> None:
    (signals,) = engine.classify_batch([text])
    found = {(e.type, text[e.start : e.end]) for e in signals.pii}
    assert expected <= found, found


def test_a_table_whose_cells_the_model_tags_in_pieces_is_still_a_table(
    engine: SignalEngine,
) -> None:
    # The run over these rows changes type cell by cell; cut in pieces, each piece passed as an
    # address. Read as the run it is, it is rows of a table, as before the cut.
    text = (
        "Sort the following table by its second column and show the result.\n\n"
        "Route,Departs,Arrives,Platform\n"
        "East Ricky - South Scott,12:45,19:20,12\n"
        "West Katherine - West Kimberly,06:30,09:05,3\n"
        "West Alicia - Port Patriciaberg,13:15,22:20,9\n"
        "Brittanystad - Williamsonview,14:15,23:05,4\n"
        "South Emilyland - Lake Andrew,09:00,23:20,8\n"
        "Dickersonton - Williamston,08:15,21:50,5\n"
        "North Noah - Andersenville,10:15,11:20,8\n"
        "South Gwendolyn - Nelsonborough,18:30,20:10,2\n"
    )
    (signals,) = engine.classify_batch([text])
    assert [(e.type, text[e.start : e.end]) for e in signals.pii] == []
