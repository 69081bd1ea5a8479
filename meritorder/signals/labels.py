"""The classifier's label vocabularies, as the policy file may name them.

Tied to the shipped classifiers/models/signals.json by a test: a label the model can emit and
the config cannot name (or the reverse) fails it."""

from __future__ import annotations

from typing import Literal, get_args

Domain = Literal[
    "biology", "business", "chemistry", "computer science", "economics", "engineering", "health",
    "history", "law", "math", "other", "philosophy", "physics", "psychology",
]  # fmt: skip
PiiType = Literal[
    "PERSON", "EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS",
    "STREET_ADDRESS",
]  # fmt: skip
DOMAINS: tuple[str, ...] = get_args(Domain)
PII_TYPES: tuple[str, ...] = get_args(PiiType)
