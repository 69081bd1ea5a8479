"""Decoding per-token PII probabilities into spans and merging them with pattern hits."""

from __future__ import annotations

import re

import numpy as np
import pytest

from classifiers.pii import TagScheme, code_identifier, merge, plausible, tidy_span, to_words
from classifiers.signals import PiiEntity

TAGS = ["O", "B-PERSON", "I-PERSON", "B-EMAIL_ADDRESS", "I-EMAIL_ADDRESS"]
SCHEME = TagScheme(TAGS)


def probs(*rows: dict[str, float]) -> np.ndarray:
    """One row per token; unnamed mass goes to O."""
    out = np.zeros((len(rows), len(TAGS)), dtype=np.float32)
    for i, row in enumerate(rows):
        for tag, p in row.items():
            out[i, TAGS.index(tag)] = p
        out[i, 0] = 1.0 - sum(row.values())
    return out


def test_b_and_i_tokens_of_one_type_form_one_span() -> None:
    spans = SCHEME.decode(probs({}, {"B-PERSON": 0.9}, {"I-PERSON": 0.8}, {}), 0.5)
    assert [(s.type, s.first, s.last) for s in spans] == [("PERSON", 1, 2)]


def test_each_run_of_entity_tokens_is_one_span_typed_by_its_largest_mass() -> None:
    # As the model was calibrated (signals.json `pii_decoding`): B- tags inside a run do not split
    # it, a gap does, and the run takes the type with the most B+I probability over its tokens
    # (one token of another type is a wobble of the tags, not a span of its own).
    spans = SCHEME.decode(
        probs(
            {"B-PERSON": 0.9},
            {"B-PERSON": 0.9},
            {},
            {"I-PERSON": 0.9},
            {"I-EMAIL_ADDRESS": 0.6},
            {"B-EMAIL_ADDRESS": 0.7},
        ),
        0.5,
    )
    assert [(s.type, s.first, s.last) for s in spans] == [("PERSON", 0, 1), ("EMAIL_ADDRESS", 3, 5)]


def test_a_run_is_cut_where_two_tokens_or_more_of_another_type_follow() -> None:
    # A name on the line above an address, a phone number just before one: read whole, the run
    # was one span of the larger type and the other entity was lost.
    spans = SCHEME.decode(
        probs(
            {"B-PERSON": 0.9},
            {"I-PERSON": 0.9},
            {"B-EMAIL_ADDRESS": 0.9},
            {"I-EMAIL_ADDRESS": 0.9},
            {"I-EMAIL_ADDRESS": 0.9},
        ),
        0.5,
    )
    assert [(s.type, s.first, s.last) for s in spans] == [("PERSON", 0, 1), ("EMAIL_ADDRESS", 2, 4)]


def test_one_token_of_another_type_at_a_runs_start_joins_the_next_stretch() -> None:
    spans = SCHEME.decode(
        probs({"B-EMAIL_ADDRESS": 0.9}, {"B-PERSON": 0.9}, {"I-PERSON": 0.9}), 0.5
    )
    assert [(s.type, s.first, s.last) for s in spans] == [("PERSON", 0, 2)]


def test_a_token_is_an_entity_when_its_non_o_mass_reaches_the_threshold() -> None:
    # 0.3 + 0.3 of PERSON: no single tag beats O, but 1 - P(O) = 0.6 >= 0.5.
    spans = SCHEME.decode(probs({"B-PERSON": 0.3, "I-PERSON": 0.3}, {"B-PERSON": 0.4}), 0.5)
    assert [(s.first, s.last) for s in spans] == [(0, 0)]


def test_span_score_is_the_mean_type_probability_of_its_tokens() -> None:
    (span,) = SCHEME.decode(probs({"B-PERSON": 0.9}, {"I-PERSON": 0.6, "B-PERSON": 0.1}), 0.5)
    assert span.score == pytest.approx(0.8, abs=1e-6)


def test_no_entity_tokens_decode_to_no_spans() -> None:
    assert SCHEME.decode(probs({}, {}, {}), 0.5) == []


def test_to_words_widens_a_span_that_ends_inside_a_word() -> None:
    text = "hi johnathan smith!"
    assert to_words(text, 3, 7) == (3, 12)
    assert to_words(text, 5, 18) == (3, 18)
    assert to_words(text, 0, 2) == (0, 2)


def test_pattern_hit_wins_its_span_over_any_model_span_it_overlaps() -> None:
    text = "Anna wrote x@example.com today"
    pattern = PiiEntity("EMAIL_ADDRESS", 11, 24, 0.95, 0, "pattern")
    same_type = PiiEntity("EMAIL_ADDRESS", 11, 20, 0.7, 0)
    other_type = PiiEntity("PERSON", 9, 14, 0.9, 0)  # `e x@e`: nothing name-shaped is left
    elsewhere = PiiEntity("PERSON", 0, 4, 0.9, 0)
    assert merge(text, [same_type, other_type, elsewhere], [pattern]) == [elsewhere, pattern]


@pytest.mark.parametrize(
    ("text", "model", "kept"),
    [
        # A name glued to an IBAN: the model read both as one name; the IBAN is the pattern's.
        (
            "Wire to Jonathan Whitaker DE89370400440532013000",
            ("PERSON", 8, 48),
            "Jonathan Whitaker",
        ),
        # An address glued after a phone number, read by the model as one phone-ish run.
        (
            "+1 415 555 0134, 742 Evergreen Terrace, Springfield",
            ("STREET_ADDRESS", 0, 51),
            "742 Evergreen Terrace, Springfield",
        ),
    ],
)
def test_what_a_model_span_holds_outside_a_pattern_hit_is_kept_when_plausible(
    text: str, model: tuple[str, int, int], kept: str
) -> None:
    hit = re.search(r"DE\d{20}|\+1 415 555 0134", text)
    assert hit is not None
    kind = "IBAN_CODE" if hit.group().startswith("DE") else "PHONE_NUMBER"
    pattern = PiiEntity(kind, hit.start(), hit.end(), 0.95, 0, "pattern")
    merged = merge(text, [PiiEntity(*model, 0.9, 0)], [pattern])
    assert [(e.type, text[e.start : e.end]) for e in merged if e.source == "model"] == [
        (model[0], kept)
    ]


@pytest.mark.parametrize(
    ("text", "kind", "span", "expected"),
    [
        ("call 3660170548- now", "PHONE_NUMBER", (5, 16), "3660170548"),
        ("60-56-85-91\n\nEmail", "PHONE_NUMBER", (0, 14), "60-56-85-91"),
        ("Dr. J. Smith,", "PERSON", (4, 13), "J. Smith"),
        ("Jelena Ruppert B.Sc., Berlin", "PERSON", (0, 20), "Jelena Ruppert B.Sc."),
        ("at 12 Main St.\n\nSpringfield", "STREET_ADDRESS", (3, 27), "12 Main St.\n\nSpringfield"),
    ],
)
def test_model_spans_lose_spilled_separators(
    text: str, kind: str, span: tuple[int, int], expected: str
) -> None:
    bounds = tidy_span(text, *span, kind)
    assert bounds is not None and text[bounds[0] : bounds[1]] == expected


def test_a_span_of_only_separators_is_dropped() -> None:
    assert tidy_span("a - b", 1, 4, "PERSON") is None


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("0176 2345 678", True),
        ("+44 (20) 7946-0958", True),
        ("2+2", False),  # arithmetic the model tags as a phone number
        ("(+1) 415 555 0100", True),
        ("+1 415+555+0100", True),  # + as a separator: a client's way past a boundary
        ("x^2 sin x from 0 to pi", False),
        ("4\n6582YH\nLage Mierde", False),
        ("1234567890123456", False),  # 16 digits: longer than any E.164 number
        ("54.57870", False),  # a coordinate the model tags as a phone number
        ("-33.868820", False),
        ("555.0100", True),  # a dotted local number: four digits after the dot
        ("2024-01-23", False),  # a date in a table's column, tagged as a phone number
        ("23.01.2024", False),
        ("2024-13-23", True),  # no month 13: digits in groups, as a number may be
    ],
)
def test_a_phone_span_must_look_like_a_phone_number(text: str, ok: bool) -> None:
    assert plausible("PHONE_NUMBER", text) is ok
    assert plausible("PERSON", text)  # only phone numbers have a shape to check


@pytest.mark.parametrize(
    ("text", "word", "code"),
    [
        ("def fib(n):\n    return fib(n - 1)", "fib", True),  # the example
        ("import asyncio", "asyncio", True),
        ("result = tuple(items)", "tuple", True),
        ("IdArray = npt.NDArray[np.int64]", "IdArray", True),
        ("raise OSError('gone')", "OSError", True),
        ("see litellm.completion for it", "litellm", True),
        ("send SIGTERM to stop it", "SIGTERM", True),
        ("call `helper` first", "helper", True),
        ("user_name is set", "user_name", True),
        ("My name is John Smith.", "John", False),
        ("please ask Maria tomorrow", "Maria", False),
        ("write to McDonald about the lease", "McDonald", False),
        ("meet DeShawn at noon", "DeShawn", False),
        ("call john when you land", "john", False),  # a name typed in lower case is still one
    ],
)
def test_a_word_used_as_code_is_no_person(text: str, word: str, code: bool) -> None:
    start = text.index(word)
    assert code_identifier(text, start, start + len(word)) is code
    assert plausible("PERSON", text, start, start + len(word)) is not code


def test_a_name_of_several_words_on_a_line_of_code_is_still_a_person() -> None:
    text = 'author = "Jane Doe"'
    start = text.index("Jane Doe")
    assert plausible("PERSON", text, start, start + len("Jane Doe"))


MOSTLY_CODE = '''def run(args):
    """Start the podman container, as Luhn would check a card."""
    config = load(args.config)
    for name in config.names:
        print(name)
    return config
'''


def test_a_lone_word_in_a_comment_of_mostly_code_is_no_person() -> None:
    start = MOSTLY_CODE.index("podman")
    assert not plausible("PERSON", MOSTLY_CODE, start, start + len("podman"))
    start = MOSTLY_CODE.index("Luhn")
    assert not plausible("PERSON", MOSTLY_CODE, start, start + len("Luhn"))


def test_prose_with_a_line_of_code_keeps_its_lone_names() -> None:
    text = "Hi, this is Maria.\nMy script fails at\n    x = load(path)\nCan you help? Thanks!\n"
    start = text.index("Maria")
    assert plausible("PERSON", text, start, start + len("Maria"))


def test_a_full_name_in_mostly_code_is_still_a_person() -> None:
    text = MOSTLY_CODE.replace("as Luhn would", "as Jane Doe asked, to")
    start = text.index("Jane Doe")
    assert plausible("PERSON", text, start, start + len("Jane Doe"))


@pytest.mark.parametrize(
    ("span", "ok"),
    [
        ("221B Baker Street, London", True),
        ("123 Main St, Apt 4, Springfield, IL 62704", True),  # one line, many commas
        ("Apt. 329, 12 Rue de Rivoli", True),
        ("3663", False),  # a number alone names no street
        ("Region,Q1,Q2,Q3,Q4\nNew Sandra,239.8,407.", False),  # the cells of a pasted table
        ("North,12,40,7,3\nSouth,9,31,2,8", False),
        ("that could", False),  # prose the model tags as an address: no number at all
        ("in savanna and woodland areas", False),
    ],
)
def test_an_address_span_must_look_like_an_address(span: str, ok: bool) -> None:
    assert plausible("STREET_ADDRESS", span) is ok


@pytest.mark.parametrize(
    ("text", "name", "ok"),
    [
        ("Is neoadjuvant therapy better than surgery alone?", "neoadjuvant", False),
        ("The patient was seen today. The cause is unknown.", "The", False),  # a function word
        ("Please ask Alice about the invoice.", "Alice", True),
        ("hey its john, call me back", "john", True),  # a text all in lower case
        ("Please email jane doe about the invoice.", "jane doe", True),  # a full name, any case
    ],
)
def test_a_person_span_must_look_like_a_name(text: str, name: str, ok: bool) -> None:
    start = text.index(name)
    assert plausible("PERSON", text, start, start + len(name)) is ok
