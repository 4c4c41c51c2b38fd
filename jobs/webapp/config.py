"""What the web app is told at start-up: its identity provider, secrets, roles and limits."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from jobs.keys import KeyRing
from jobs.rules.quiet_hours import Window

SESSION_HOURS = 8


@dataclass(frozen=True)
class WebConfig:
    """Typed parts of `[web]` and the few other settings the app reads."""

    public_url: str
    issuer: str
    client_id: str
    client_secret: str
    session_secret: str
    keyring: KeyRing
    user_claim: str = "sub"
    viewers: frozenset[str] = frozenset()
    admins: frozenset[str] = frozenset()
    api_audience: str | None = None
    read_token: str | None = None
    broadcasts_per_hour: int = 5
    price_per_segment: float = 0.0
    currency: str = "USD"
    rate_per_second: float | None = None
    quiet_hours: Window | None = None
    max_segments: int = 10
    require_signatures: bool = True
    listen_host: str = "127.0.0.1"

    @property
    def callback_url(self) -> str:
        return self.public_url.rstrip("/") + "/callback"

    @property
    def secure_cookies(self) -> bool:
        """Secure cookies, unless the app listens on loopback and is reached without TLS."""
        if urlsplit(self.public_url).scheme == "https":
            return True
        return not _loopback(self.listen_host)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
