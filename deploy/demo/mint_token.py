"""Mint a DEMO tenant token that the shipped Envoy (deploy/envoy/envoy.yaml) accepts.

The key pair beside this file is a PUBLIC DEMO key: anyone can mint tokens with it. A real
deployment puts its identity provider's JWKS (or `remote_jwks`) in Envoy's `jwt_authn` filter and
never ships a private key. Usage:

    python deploy/demo/mint_token.py acme            # prints a token valid for one hour
    curl -H "x-tenant-token: $(python deploy/demo/mint_token.py acme)" ...
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import jwt

HERE = Path(__file__).resolve().parent
PRIVATE_KEY = HERE / "tenant-demo-private-key.pem"
ISSUER = "meritorder-demo"
AUDIENCE = "meritorder"
KEY_ID = "meritorder-demo-1"
# The request header Envoy reads the token from, and the claim it copies into x-meritorder-tenant.
TOKEN_HEADER = "x-tenant-token"
TENANT_CLAIM = "tenant"


def mint_token(
    tenant: str | None,
    *,
    ttl_s: float = 3600,
    key: str | bytes | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """A signed RS256 token for `tenant` (no tenant claim when None), valid for `ttl_s`."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": f"demo:{tenant}",
        "iat": now,
        "exp": now + int(ttl_s),
    }
    if tenant is not None:
        claims[TENANT_CLAIM] = tenant
    claims.update(extra or {})
    signing_key = key if key is not None else PRIVATE_KEY.read_bytes()
    return jwt.encode(claims, signing_key, algorithm="RS256", headers={"kid": KEY_ID})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tenant", help="the tenant claim, e.g. acme")
    parser.add_argument("--ttl", type=float, default=3600, help="seconds until it expires")
    args = parser.parse_args()
    print(mint_token(args.tenant, ttl_s=args.ttl))


if __name__ == "__main__":
    main()
