"""A real OpenID provider for tests: oidc-provider from npm, run by node with a JSON config."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from joserfc.jwk import RSAKey

from tests.e2e.observe import free_port, wait_for
from tests.processes import stop

ROOT = Path(__file__).resolve().parents[2]
MODULE_DIR = ROOT / ".cache" / "oidc-provider"
SCRIPT = Path(__file__).with_name("oidc_provider.mjs")
NODE = shutil.which("node")
INSTALLED = NODE is not None and (MODULE_DIR / "node_modules" / "oidc-provider").is_dir()


def new_jwk() -> dict[str, Any]:
    """An RSA signing key as a private JWK, with a key id."""
    key = RSAKey.generate_key(2048, parameters={"use": "sig", "alg": "RS256"})
    jwk = key.as_dict(private=True)
    jwk["kid"] = key.thumbprint()
    return jwk


@dataclass
class Provider:
    """A running provider; `close()` stops it (SIGTERM, then SIGKILL)."""

    issuer: str
    process: subprocess.Popen[str]

    def close(self) -> None:
        stop(self.process)

    def wait(self) -> Provider:
        """Wait until the discovery document answers; fail with node's output if it exits."""
        try:
            wait_for(lambda: _answers(self), "the OpenID provider to answer", timeout=30)
        except BaseException:
            running = self.process.poll() is None
            _out, err = stop(self.process) if running else self.process.communicate()
            raise AssertionError(f"oidc-provider did not start: {err[-2000:]}") from None
        return self

    def token(self, client_id: str, secret: str, resource: str) -> str:
        """An access token from the client-credentials grant for `resource`."""
        answer = requests.post(
            f"{self.issuer}/token",
            data={"grant_type": "client_credentials", "resource": resource, "scope": "messages"},
            auth=(client_id, secret),
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])


def launch(
    tmp: Path,
    *,
    clients: list[dict[str, Any]],
    accounts: dict[str, dict[str, Any]],
    resources: list[str],
    jwk: dict[str, Any],
    name: str = "idp",
) -> Provider:
    """Start a provider on a free loopback port without waiting for it: `wait()` does, so the
    caller can do other work while node starts."""
    assert NODE is not None
    issuer = f"http://127.0.0.1:{free_port()}"
    conf = tmp / f"{name}.json"
    conf.write_text(
        json.dumps({
            "module_dir": str(MODULE_DIR), "issuer": issuer, "clients": clients,
            "accounts": accounts, "resources": resources, "jwk": jwk,
            "cookie_key": f"cookie-key-{name}-0123456789abcdef",
        }),
        encoding="utf-8",
    )  # fmt: skip
    process = subprocess.Popen(
        [NODE, str(SCRIPT), str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return Provider(issuer, process)


def _answers(provider: Provider) -> bool:
    if provider.process.poll() is not None:
        raise AssertionError("oidc-provider exited")
    try:
        url = provider.issuer + "/.well-known/openid-configuration"
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False
