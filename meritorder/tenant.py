"""Who pays for a request: the tenant named by a header the operator's gateway sets.

The router cannot authenticate anyone; it trusts one header (`budgets.header`) that an
authenticating layer sets and that clients cannot set themselves. The shipped Envoy strips every
client `x-meritorder-*` header and sets `x-meritorder-tenant` from a verified JWT's `tenant`
claim (deploy/envoy/envoy.yaml). Requests without a valid tenant share one `UNVERIFIED` bucket.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping

# The budget key of every request without a verified tenant. Parentheses cannot occur in a
# normalized tenant name, so no tenant can be named this.
UNVERIFIED = "(unverified)"
# The header the shipped Envoy sets from a verified token (`budgets.header` may name another).
TENANT_HEADER = "x-meritorder-tenant"

MAX_TENANT_LENGTH = 64
_VALID = re.compile(r"[a-z0-9](?:[a-z0-9._:@-]*[a-z0-9])?")


def normalize_tenant(raw: str) -> str | None:
    """The canonical form of a tenant name (NFKC, case-folded, trimmed), or None if invalid.

    Full-width or upper-case spellings of a name are the same tenant; anything outside
    `[a-z0-9._:@-]` after normalization (other scripts, look-alike letters, spaces, controls)
    or longer than 64 characters is no tenant at all."""
    if len(raw) > 4 * MAX_TENANT_LENGTH:  # bound the work on hostile input before normalizing
        return None
    name = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", raw).casefold()).strip()
    if len(name) > MAX_TENANT_LENGTH or _VALID.fullmatch(name) is None:
        return None
    return name


def tenant_of(headers: Mapping[str, str], header: str) -> str:
    """The verified tenant of a request, or `UNVERIFIED` when the header is absent or invalid."""
    raw = headers.get(header)
    if raw is None:
        return UNVERIFIED
    return normalize_tenant(_as_utf8(raw)) or UNVERIFIED


def _as_utf8(value: str) -> str:
    """Header bytes arrive decoded as latin-1; a JWT claim copied into a header is UTF-8."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return value
