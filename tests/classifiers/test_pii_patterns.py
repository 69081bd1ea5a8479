"""The deterministic PII detectors: checksums, ranges, boundaries and exact character offsets."""

from __future__ import annotations

import itertools

import pytest

from classifiers.pii_patterns import find_pii, iban_valid, luhn_valid, ssn_valid


def found(text: str) -> list[tuple[str, str]]:
    return [(hit.type, text[hit.start : hit.end]) for hit in find_pii(text)]


def with_luhn(prefix: str) -> str:
    """`prefix` plus the Luhn check digit that makes it valid."""
    return next(prefix + d for d in "0123456789" if luhn_valid(prefix + d))


# -- credit cards ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "4222222222222",
    ],
)
def test_luhn_accepts_known_test_card_numbers(number: str) -> None:
    assert luhn_valid(number)


@pytest.mark.parametrize("number", ["4111111111111112", "5555555555554440", "378282246310006"])
def test_luhn_rejects_a_changed_check_digit(number: str) -> None:
    assert not luhn_valid(number)


@pytest.mark.parametrize(
    "card", ["4111111111111111", "4111 1111 1111 1111", "4111-1111-1111-1111", "3782 822463 10005"]
)
def test_credit_card_is_found_with_spaces_or_dashes_at_exact_offsets(card: str) -> None:
    text = f"Charge my card {card}, please."
    (hit,) = find_pii(text)
    assert (hit.type, hit.start, hit.end) == ("CREDIT_CARD", 15, 15 + len(card))
    assert hit.source == "pattern" and hit.score >= 0.9


def test_credit_card_with_a_bad_checksum_is_not_reported() -> None:
    assert found("card 4111 1111 1111 1112") == []


def test_card_length_boundaries_are_13_to_19_digits() -> None:
    assert found(f"x {with_luhn('4' * 12)} y") == [("CREDIT_CARD", with_luhn("4" * 12))]
    assert found(f"x {with_luhn('4' + '1' * 17)} y") == [("CREDIT_CARD", with_luhn("4" + "1" * 17))]
    assert found(f"x {with_luhn('4' * 11)} y") == []  # 12 digits
    assert found(f"x {with_luhn('4' * 19)} y") == []  # 20 digits


def test_luhn_valid_number_without_a_card_issuer_prefix_is_not_a_card() -> None:
    assert found(f"order {with_luhn('1' * 15)}") == []


def test_card_digits_inside_a_longer_number_are_not_reported() -> None:
    assert found("tracking 94111111111111111123") == []
    assert found("id-4111111111111111") == []


def test_a_slice_of_a_list_of_numbers_is_not_a_card() -> None:
    # 664 53 922 160 115 380 is Luhn-valid and starts with 6, but it is six numbers of a list.
    assert found("numbers: 965 255 664 53 922 160 115 380") == []


def test_oddly_spaced_digits_are_a_card_when_they_are_the_whole_number() -> None:
    assert found("card 41 11 1111 1111 1111, thanks") == [("CREDIT_CARD", "41 11 1111 1111 1111")]


def test_card_next_to_another_number_group_is_still_found() -> None:
    text = "ref 12 4111 1111 1111 1111 ok"
    assert found(text) == [("CREDIT_CARD", "4111 1111 1111 1111")]


# -- IBAN --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "iban",
    [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NO93 8601 1117 947",
    ],
)
def test_valid_iban_is_found_with_or_without_spaces(iban: str) -> None:
    text = f"Send it to {iban}. Thanks"
    (hit,) = find_pii(text)
    assert (hit.type, text[hit.start : hit.end]) == ("IBAN_CODE", iban)


@pytest.mark.parametrize(
    "iban",
    ["de 89 3704 0044 0532 0130 00", "de 89370400440532013000", "gb 29 nwbk 6016 1331 9268 19"],
)
def test_a_lower_case_iban_with_its_code_apart_is_found(iban: str) -> None:
    text = f"wire it to {iban}. Thanks"
    (hit,) = find_pii(text)
    assert (hit.type, text[hit.start : hit.end]) == ("IBAN_CODE", iban)


@pytest.mark.parametrize(
    "text",
    [
        "we met at 88 the quick brown fox jumps",  # AT88THEQUICKBROWNFOX passes the checksum
        "values at 11 12 34 56 78 90 12 34 56",  # AT111234567890123456 does too
        "values at 11 1234 5678 9012 3456 7890",  # the head of a longer run of digits
    ],
)
def test_words_and_number_lists_after_a_lower_case_country_code_are_no_iban(text: str) -> None:
    assert [h for h in find_pii(text) if h.type == "IBAN_CODE"] == []


def test_iban_with_wrong_check_digits_is_rejected() -> None:
    assert not iban_valid("DE88370400440532013000")
    assert found("IBAN DE88 3704 0044 0532 0130 00") == []


def test_iban_of_the_wrong_length_for_its_country_is_rejected() -> None:
    assert not iban_valid("DE8937040044053201300")
    assert found("IBAN DE89 3704 0044 0532 0130 001") == []


def test_iban_of_an_unknown_country_is_rejected() -> None:
    assert not iban_valid("ZZ89370400440532013000")


def test_iban_ends_at_its_length_even_when_words_follow() -> None:
    text = "DE89 3704 0044 0532 0130 00 ABC"
    assert found(text) == [("IBAN_CODE", "DE89 3704 0044 0532 0130 00")]


# -- US SSN ------------------------------------------------------------------------------------


def test_dashed_and_spaced_ssn_are_found_with_high_confidence() -> None:
    dashed, spaced = find_pii("a 123-45-6789 b"), find_pii("a 123 45 6789 b")
    assert [(h.type, h.start, h.end) for h in dashed] == [("US_SSN", 2, 13)]
    assert [(h.type, h.start, h.end) for h in spaced] == [("US_SSN", 2, 13)]
    assert dashed[0].score >= 0.8 and spaced[0].score >= 0.8


@pytest.mark.parametrize(
    ("area", "group", "serial", "valid"),
    [
        ("123", "45", "6789", True),
        ("000", "45", "6789", False),
        ("666", "45", "6789", False),
        ("900", "45", "6789", False),
        ("999", "45", "6789", False),
        ("123", "00", "6789", False),
        ("123", "45", "0000", False),
        ("899", "99", "9999", True),
    ],
)
def test_ssn_area_group_and_serial_rules(area: str, group: str, serial: str, valid: bool) -> None:
    assert ssn_valid(area, group, serial) is valid
    assert bool(found(f"ssn {area}-{group}-{serial}")) is valid


def test_bare_nine_digits_are_an_ssn_only_near_context_words() -> None:
    assert found("My SSN is 123456789.") == [("US_SSN", "123456789")]
    assert found("social security number: 123456789") == [("US_SSN", "123456789")]
    assert found("Invoice 123456789 is due.") == []


def test_ssn_with_mixed_separators_is_not_reported() -> None:
    assert found("a 123-45 6789 b") == []


# -- email -------------------------------------------------------------------------------------


def test_email_is_found_without_trailing_punctuation() -> None:
    text = "Write to john.doe+tag@mail.example.co.uk."
    assert found(text) == [("EMAIL_ADDRESS", "john.doe+tag@mail.example.co.uk")]


def test_email_needs_a_domain_with_a_top_level_part() -> None:
    assert found("user@localhost and @handle") == []


# -- IP addresses ------------------------------------------------------------------------------


def test_ipv4_is_found_and_each_octet_must_be_in_range() -> None:
    assert found("from 192.168.1.20, not 256.1.1.1") == [("IP_ADDRESS", "192.168.1.20")]


@pytest.mark.parametrize(
    "text", ["version 1.2.3.4", "v1.2.3.4", "1.2.3.4.5", "01.02.03.04", "pi is 3.14159"]
)
def test_versions_and_dotted_numbers_are_not_ip_addresses(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    "address",
    ["2001:0db8:85a3:0000:0000:8a2e:0370:7334", "2001:db8::ff00:42:8329", "2a00:1450:4001::200e"],
)
def test_ipv6_is_found_in_full_and_compressed_forms(address: str) -> None:
    assert found(f"host {address} up") == [("IP_ADDRESS", address)]


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "0.0.0.0", "169.254.10.1", "224.0.0.251", "::1", "::", "fe80::1%eth0", "ff02::1"],
)
def test_addresses_that_name_no_host_are_not_pii(address: str) -> None:
    # this machine, any address, link-local and multicast: what code and logs are full of
    assert found(f"listening on {address} port 8080") == []


def test_an_address_in_a_log_line_is_still_found() -> None:
    line = "2026-12-01T09:00:00Z INFO request from 203.0.113.7 user=jane.doe@example.com status=200"
    assert found(line) == [("IP_ADDRESS", "203.0.113.7"), ("EMAIL_ADDRESS", "jane.doe@example.com")]


def test_ipv4_mapped_ipv6_is_one_address() -> None:
    assert found("peer ::ffff:192.168.0.1 ok") == [("IP_ADDRESS", "::ffff:192.168.0.1")]


@pytest.mark.parametrize(
    "text", ["std::vector<int>", "a::b", "at 10:30:00", "mac 00:1A:2B:3C:4D:5E"]
)
def test_code_times_and_mac_addresses_are_not_ipv6(text: str) -> None:
    assert found(text) == []


# -- phone numbers -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "phone",
    [
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "1-555-123-4567",
        "+1 (555) 123-4567",
        "+44 20 7946 0958",
        "+33 1 23 45 67 89",
        "+49 30 1234567",
        "020 7946 0958",
        "07700 900123",
        "0044 20 7946 0958",  # 00 for +, as it is dialled from most of the world
        "0049 30 901820",
        "0033.1.23.45.67.89",
        "001-415-555-0134",
    ],
)
def test_phone_number_formats_are_found(phone: str) -> None:
    assert found(f"Call {phone} today") == [("PHONE_NUMBER", phone)]


@pytest.mark.parametrize(
    "phone",
    ["0202014921 x1405", "34 41 10 71 ext. 5616", "612 34 57 87#3532", "81234833;ext=2115"],
)
def test_a_national_number_with_an_extension_is_a_phone_number(phone: str) -> None:
    assert found(f"Call {phone} today") == [("PHONE_NUMBER", phone)]


@pytest.mark.parametrize(
    "phone", ["+97122348200 x648", "345-899-3560x4587", "020 7946 0958 ext 12", "0202014921 X1405"]
)
def test_an_extension_is_part_of_the_phone_number_it_follows(phone: str) -> None:
    assert found(f"Call {phone} today") == [("PHONE_NUMBER", phone)]


@pytest.mark.parametrize(
    "text",
    [
        "on 2024-01-15",
        "on 15/01/2024",
        "on 01-15-2024",
        "from 1999-2024",
        "version 10.2.3",
        "v1.2.3 released",
        "costs 1,234,567.89",
        "zip 90210",
        "at 10:30",
        "ratio 3.14159",
        "page 123 of 4567",
        "id 00442079460958",  # 00 with nothing apart: as likely an account number
        "screens 1920 1080 x 2",  # a product, not an extension
        "order 1234567 x 3 units",
        "ticket 2024 1234 #5",  # an issue number
    ],
)
def test_dates_versions_and_ordinary_numbers_are_not_pii(text: str) -> None:
    assert found(text) == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("phone: 4155550134", "4155550134"),
        ("my cell is 4155550134.", "4155550134"),
        ("call us at 4155550134", "4155550134"),
        ("Tel. 0301234567", "0301234567"),
        ("phone number is +14155550134", "+14155550134"),
        ("mi teléfono es 612345678", "612345678"),
        ("Telefonnummer 01701234567", "01701234567"),
        ("номер телефона: 89161234567", "89161234567"),
        ("电话号码: 13812345678", "13812345678"),
        ("phone: 4 1 5 5 5 5 0 1 3 4", "4 1 5 5 5 5 0 1 3 4"),
        ("my phone:\n415\n555\n0134\nthanks", "415\n555\n0134"),  # its groups down the lines
        ("call4155550134 after six", "4155550134"),  # glued to the word
        ("Tel+4930123456", "+4930123456"),
        ("phoneno13812345678", "13812345678"),
    ],
)
def test_a_bare_number_after_words_that_say_phone_is_a_phone_number(text: str, number: str) -> None:
    assert found(text) == [("PHONE_NUMBER", number)]


@pytest.mark.parametrize(
    "text",
    [
        "order number 4155550134",  # a bare number with no word for phone
        "cell count 1234567",  # a word for phone, then a word that is not a link
        "mobile app downloads: 1234567",
        "the call took 1234567 ms",
        "phone island 1234567",  # "is" inside a longer word
        "tel 12.5 13.7 14.2 15.1",  # decimals in a list
        "phone 1234567890123456",  # too long for E.164
        "phone. Then 4155550134",  # the sentence ended between them
        "recall1234567 hotel1234567 calls12345678",  # glued to a word that only ends like one
        "phone models:\n2019\n2020\n2021",  # a column of years after a word that is no link
        "phone:\n4\n1\n5\n5\n5\n5\n0",  # a column of single digits: a list, not groups
    ],
)
def test_counts_and_ids_near_words_for_phone_are_not_phone_numbers(text: str) -> None:
    assert found(text) == []


def test_card_and_ssn_are_not_also_reported_as_phone_numbers() -> None:
    assert found("4111 1111 1111 1111 and 123-45-6789") == [
        ("CREDIT_CARD", "4111 1111 1111 1111"),
        ("US_SSN", "123-45-6789"),
    ]


# -- offsets -----------------------------------------------------------------------------------


def test_offsets_are_python_string_indices_after_non_ascii_text() -> None:
    text = "Zoë 😀 ünïcödé — mail zoe@example.com or +44 20 7946 0958"
    hits = find_pii(text)
    assert [(h.type, text[h.start : h.end]) for h in hits] == [
        ("EMAIL_ADDRESS", "zoe@example.com"),
        ("PHONE_NUMBER", "+44 20 7946 0958"),
    ]


def test_hits_are_ordered_by_start_and_never_overlap() -> None:
    text = "ip 10.0.0.1 mail a@example.org card 4111111111111111 ssn 123-45-6789"
    hits = find_pii(text)
    assert [h.start for h in hits] == sorted(h.start for h in hits)
    assert all(a.end <= b.start for a, b in itertools.pairwise(hits))
    assert len(hits) == 4


def test_an_iban_typed_in_lower_case_is_found_and_wins_over_the_card_inside_it() -> None:
    text = "pay to es91 2100 0418 4502 0005 1332 today"
    (hit,) = find_pii(text)
    assert (hit.type, text[hit.start : hit.end]) == ("IBAN_CODE", "es91 2100 0418 4502 0005 1332")


@pytest.mark.parametrize("number", ["3591210350344663", "583745588520"])
def test_luhn_valid_card_numbers_outside_the_known_ranges_are_cards(number: str) -> None:
    (hit,) = find_pii(f"my card is {number}, ok")
    assert hit.type == "CREDIT_CARD"


def test_a_luhn_valid_number_without_a_card_industry_digit_is_not_a_card() -> None:
    assert not [h for h in find_pii("order 1234567812345670 shipped") if h.type == "CREDIT_CARD"]
