"""Checking the issuer's JSON Web Tokens: signature by its published keys, issuer, audience,
expiry and, for ID tokens, the nonce of the sign-in that asked for it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

ALGORITHMS = ["RS256", "PS256", "ES256"]
LEEWAY_SECONDS = 60
REFETCH_SECONDS = 60.0

Fetch = Callable[[str], dict[str, Any]]


class TokenRefused(Exception):
    """The token is not one this app accepts; the message says why (never the token)."""


def fetch_json(url: str) -> dict[str, Any]:
    """GET a JSON document (the discovery document, the key set)."""
    answer = requests.get(url, timeout=10)
    answer.raise_for_status()
    found = answer.json()
    if not isinstance(found, dict):
        raise ValueError(f"{url} did not answer a JSON object")
    return found


class Issuer:
    """One OpenID provider: its discovery document and key set, read once and cached; the keys
    are read again (at most once a minute) when a token names a key not seen yet."""

    def __init__(self, issuer: str, fetch: Fetch = fetch_json) -> None:
        self.issuer = issuer
        self._fetch = fetch
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_at = 0.0

    @property
    def metadata(self) -> dict[str, Any]:
        with self._lock:
            if self._metadata is None:
                found = self._fetch(self.issuer.rstrip("/") + "/.well-known/openid-configuration")
                if found.get("issuer") != self.issuer:
                    raise TokenRefused("the discovery document names another issuer")
                self._metadata = found
            return self._metadata

    def _key_set(self, refresh: bool) -> KeySet:
        uri = str(self.metadata["jwks_uri"])
        with self._lock:
            stale = time.monotonic() - self._keys_at > REFETCH_SECONDS
            if self._keys is None or (refresh and stale):
                self._keys = KeySet.import_key_set(self._fetch(uri))  # type: ignore[arg-type]
                self._keys_at = time.monotonic()
            return self._keys

    def verify(self, token: str, audience: str, nonce: str | None = None) -> dict[str, Any]:
        """The claims of `token` if the issuer signed it for `audience` and it has not expired
        (and it carries `nonce`, when one is given); raises TokenRefused otherwise."""
        try:
            decoded = self._decode(token, refresh=False)
        except JoseError:
            decoded = self._decode(token, refresh=True)  # the issuer may have rotated its keys
        claims = dict(decoded.claims)
        registry = JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise TokenRefused(f"token refused: {exc.description or exc.error}") from None
        if nonce is not None and claims.get("nonce") != nonce:
            raise TokenRefused("token refused: its nonce is not this sign-in's")
        return claims

    def _decode(self, token: str, refresh: bool) -> jwt.Token:
        try:
            return jwt.decode(token, self._key_set(refresh), algorithms=ALGORITHMS)
        except JoseError as exc:
            if refresh:
                raise TokenRefused(f"token refused: {exc.error}") from None
            raise
        except ValueError:
            raise TokenRefused("token refused: not a JSON Web Token") from None
