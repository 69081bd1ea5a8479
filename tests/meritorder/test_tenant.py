"""Who pays: tenant names normalized from the trusted header, and the budgets config that keys on
them (limits, default and unverified budgets, refusal)."""

from __future__ import annotations

import pytest

from meritorder.config import ConfigError, parse_config
from meritorder.tenant import UNVERIFIED, normalize_tenant, tenant_of

MODELS = """
models: [{name: small, cluster: a, upstream_model: s, cost: 1}]
default_model: small
"""


@pytest.mark.parametrize(
    "raw",
    [
        "acme",
        "ACME",
        " Acme\t",
        "\uff21\uff23\uff2d\uff25",  # full-width ACME
        "acme\r\n",
    ],
)
def test_spellings_of_one_name_are_one_tenant(raw: str) -> None:
    assert normalize_tenant(raw) == "acme"


def test_compatibility_forms_and_case_fold_to_their_canonical_name() -> None:
    assert normalize_tenant("\ufb01rm") == "firm"  # the fi ligature
    assert normalize_tenant("Stra\u00dfe") == "strasse"
    assert normalize_tenant("team-7.eu:prod@corp") == "team-7.eu:prod@corp"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "\u0430\u0441\u043c\u0435",  # Cyrillic letters that look like "acme"
        "acme\u200b",  # a zero-width space
        "ac me",
        "acme,globex",
        "ac\nme",
        "acme\x00",
        "-acme",
        "acme-",
        UNVERIFIED,
        "a" * 65,
        "a" * 10_000,
    ],
)
def test_names_outside_the_safe_alphabet_are_no_tenant(raw: str) -> None:
    assert normalize_tenant(raw) is None


def test_a_request_without_a_valid_tenant_header_is_unverified() -> None:
    assert tenant_of({}, "x-meritorder-tenant") == UNVERIFIED
    assert tenant_of({"x-tenant": "acme"}, "x-meritorder-tenant") == UNVERIFIED
    assert tenant_of({"x-meritorder-tenant": "a b"}, "x-meritorder-tenant") == UNVERIFIED
    assert tenant_of({"x-meritorder-tenant": "ACME"}, "x-meritorder-tenant") == "acme"


def test_a_utf8_claim_read_as_latin1_header_bytes_is_decoded_before_normalizing() -> None:
    # Envoy copies a JWT claim into the header as UTF-8; the processor decodes header bytes as
    # latin-1. The full-width spelling must still be the tenant it names.
    raw = "\uff21\uff23\uff2d\uff25".encode().decode("latin-1")
    assert tenant_of({"x-meritorder-tenant": raw}, "x-meritorder-tenant") == "acme"


def test_limits_are_keyed_by_normalized_names() -> None:
    config = parse_config(MODELS + "budgets: {limits: {ACME: 2, '\uff27\uff4c\uff4f\uff42ex': 3}}")
    assert config.budgets is not None
    assert config.budgets.limits == {"acme": 2.0, "globex": 3.0}


def test_two_limits_for_one_normalized_tenant_are_a_config_error() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(MODELS + "budgets: {limits: {acme: 1, ' ACME': 2, 'bad name': 3}}")
    assert raised.value.problems == [
        "budgets.limits: 'acme' and ' ACME' are the same tenant 'acme' once normalized; "
        "keep one of them",
        "budgets.limits: 'bad name' is not a valid tenant name; use 1-64 characters of "
        "a-z 0-9 . _ : @ - (case and full-width forms are folded)",
    ]


def test_a_refused_unverified_request_has_no_limit_to_configure() -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(MODELS + "budgets: {unverified: refuse, unverified_limit: 1}")
    assert "remove unverified_limit or set unverified: budget" in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        parse_config(MODELS + "budgets: {unverified: refused}")
    assert "did you mean 'refuse'?" in str(raised.value)


def test_each_kind_of_tenant_gets_its_own_ceiling() -> None:
    config = parse_config(
        MODELS + "budgets: {limits: {acme: 5}, default_limit: 2, unverified_limit: 0.5}"
    )
    budgets = config.budgets
    assert budgets is not None
    assert budgets.header == "x-meritorder-tenant"  # the header the shipped Envoy verifies
    assert budgets.limit_for("acme") == 5
    assert budgets.limit_for("newco") == 2
    assert budgets.limit_for(UNVERIFIED) == 0.5
    shared = parse_config(MODELS + "budgets: {default_limit: 2}").budgets
    assert shared is not None and shared.limit_for(UNVERIFIED) == 2
