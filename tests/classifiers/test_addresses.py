"""The edges of an address the model tagged: widened to what its tags left out, narrowed to the
address, its pieces joined; never an address made where the model found none."""

from __future__ import annotations

import pytest

from classifiers.addresses import address_bounds, compound, joined


def bounded(text: str, tagged: str) -> str:
    """The address `address_bounds` makes of the model's span `tagged` (its first occurrence)."""
    start = text.index(tagged)
    a, b = address_bounds(text, start, start + len(tagged))
    return text[a:b]


@pytest.mark.parametrize(
    ("text", "tagged", "address"),
    [
        # the street's type word and house number before the name the tags start on
        ("Send it to 2274 Via delle Coste 41 please", "delle Coste 41", "2274 Via delle Coste 41"),
        ("Morada: Rua João Pessoa 1636, Recife", "Pessoa 1636", "Rua João Pessoa 1636"),
        ("C/ Señores Curas 88\nMadrid", "Señores Curas 88", "C/ Señores Curas 88"),
        ("ship to 50, boulevard Evrard", "boulevard Evrard", "50, boulevard Evrard"),
        ("at 4923 Parmova 109 today", "Parmova 109", "4923 Parmova 109"),
        # the region and postcode after the town the tags stop on
        (
            "7501 Daniel Prairie Apt. 054\nFreemanside, IN 21813.",
            "7501 Daniel Prairie Apt. 054\nFreemanside",
            "7501 Daniel Prairie Apt. 054\nFreemanside, IN 21813",
        ),
        (
            "33 Rideau St\nOttawa, ON K1N 5W8",
            "33 Rideau St\nOttawa",
            "33 Rideau St\nOttawa, ON K1N 5W8",
        ),
        ("Ritterring 8-4, 59568 Rastatt is new", "Ritterring 8", "Ritterring 8-4, 59568 Rastatt"),
        (
            "0658 monica squares, maryside, ia 50893",
            "0658 monica squares, maryside",
            "0658 monica squares, maryside, ia 50893",
        ),  # all lower case: so may the code be
        ("Deliver to 2450 Crown St tomorrow", "2450 Crown", "2450 Crown St"),
        # a hyphenated street, a bracket left open
        ("Lara-Beer-Gasse 2-9", "Gasse 2", "Lara-Beer-Gasse 2-9"),
        (
            "Borgo Greco 6, 10074, Lanzo Torinese (TO)",
            "Borgo Greco 6, 10074, Lanzo Torinese (",
            "Borgo Greco 6, 10074, Lanzo Torinese (TO)",
        ),
        # the name or company on the lines above the street is not the address
        (
            "Leonard Arntsen\nDataweave\n353 Buerlia 227\nSandefjord",
            "Leonard Arntsen\nDataweave\n353 Buerlia 227\nSandefjord",
            "353 Buerlia 227\nSandefjord",
        ),
        # a ship's name is part of its military address
        ("USNS Bergman\nFPO AP 93757", "USNS Bergman\nFPO AP 93757", "USNS Bergman\nFPO AP 93757"),
        ("USNS Barrett, FPO AA 70954", "FPO AA 70954", "USNS Barrett, FPO AA 70954"),
    ],
)
def test_an_address_is_widened_to_what_its_tags_left_out(
    text: str, tagged: str, address: str
) -> None:
    assert bounded(text, tagged) == address


@pytest.mark.parametrize(
    ("text", "tagged"),
    [
        ("I met Maria at 12 Main St yesterday", "12 Main St"),  # `at` opens no street
        ("Call me about 12 Main St, 2 or 3 times", "12 Main St"),  # no region code after it
        ("Rooms 12 Main St and more", "12 Main St"),
        ("We met at 12 Main St, at 10000 feet up", "12 Main St"),  # `at` is no region code
        ("call +1 415 555 0134, 742 Evergreen Terrace", "742 Evergreen Terrace"),  # a phone's end
        ("Send it via courier to 12 Main St", "12 Main St"),  # `via` the English word
        ("Please place the order at Main St 12", "Main St 12"),
        ("12 Main St\nSpringfield", "12 Main St\nSpringfield"),  # one line without a digit stays
    ],
)
def test_an_address_is_not_widened_over_what_is_not_its_own(text: str, tagged: str) -> None:
    assert bounded(text, tagged) == tagged


def test_a_long_line_before_an_address_is_read_only_near_it() -> None:
    text = "x" * 100_000 + " Via Roma 5"
    start = text.index("Roma")
    assert text[slice(*address_bounds(text, start, len(text)))] == "Via Roma 5"


def test_a_span_that_stops_at_a_hyphen_takes_the_whole_word() -> None:
    text = "Kornelia Rosemann-Karz wrote"
    assert compound(text, 0, 17) == (0, 22)
    assert compound("Anika-Kroker-Ring 46", 13, 20) == (0, 20)
    assert compound("born 1990 - 1995", 5, 9) == (5, 9)  # a dash between words joins nothing


@pytest.mark.parametrize(
    ("text", "pieces", "expected"),
    [
        (
            "9851 Derek Loaf, New Lucasport, CA 86335",
            ["9851 Derek Loaf", "New Lucasport, CA 86335"],
            ["9851 Derek Loaf, New Lucasport, CA 86335"],
        ),
        (
            "häringstr. 91/49, 42859 paderborn",
            ["häringstr. 91", "49, 42859 paderborn"],
            ["häringstr. 91/49, 42859 paderborn"],
        ),
        (
            "94472 Atamaria 55\n, WHT 59050",
            ["94472 Atamaria 55", "WHT 59050"],
            ["94472 Atamaria 55\n, WHT 59050"],
        ),
        # two addresses with a word between them stay two
        (
            "12 Main St, Springfield and 4 Oak Ave, Denver",
            ["12 Main St, Springfield", "4 Oak Ave, Denver"],
            ["12 Main St, Springfield", "4 Oak Ave, Denver"],
        ),
        ("12 Main St\n\n4 Oak Ave", ["12 Main St", "4 Oak Ave"], ["12 Main St", "4 Oak Ave"]),
    ],
)
def test_the_pieces_of_one_address_are_joined(
    text: str, pieces: list[str], expected: list[str]
) -> None:
    spans = [(text.index(p), text.index(p) + len(p)) for p in pieces]
    assert [text[a:b] for a, b in joined(text, spans)] == expected
