"""Signing keys: one per authorised user and one for the daemon, kept with the daemon's
configuration (files or settings), never in the database."""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jobs.errors import ConfigError
from jobs.model import Problem
from jobs.rules import replay, seal, signing

DAEMON_KEY_FILE = "daemon.key"
USERS_DIR = "users"
MAX_PLAIN_NAME = 200
HASHED_PREFIX = 180


class KeyRing:
    """Finds and creates keys. A user's key is read from its file on every use, so deleting the
    file revokes it at once."""

    def __init__(
        self,
        keys_dir: Path,
        user_keys: Mapping[str, str] | None = None,
        daemon_key: str | None = None,
    ) -> None:
        self.keys_dir = keys_dir.expanduser()
        self.user_keys = dict(user_keys or {})
        self._daemon_key = daemon_key

    def path_for(self, user: str) -> Path:
        """Where `user`'s key file lives; the name is escaped so no user name leaves the folder."""
        name = quote(user, safe="@_-")
        if len(name) > MAX_PLAIN_NAME:
            # Escaping can triple a name past the 255-byte file name limit. A hashed name is
            # longer than any plain one, so the two kinds never collide.
            digest = hashlib.sha256(user.encode("utf-8")).hexdigest()
            name = f"{name[:HASHED_PREFIX]}~{digest}"
        return self.keys_dir / USERS_DIR / f"{name}.key"

    def user_key(self, user: str) -> str | None:
        if user in self.user_keys:
            return self.user_keys[user]
        return _read(self.path_for(user))

    def create_user_key(self, user: str) -> Path:
        """Create `user`'s key file (mode 0600) unless it exists; returns its path."""
        path = self.path_for(user)
        if not path.exists():
            _write_new(path, signing.new_key())
        return path

    def daemon_key(self) -> str:
        """The key the daemon signs broadcast messages with; created on first use."""
        if self._daemon_key is None:
            path = self.keys_dir / DAEMON_KEY_FILE
            key = _read(path)
            if key is None:
                try:
                    _write_new(path, signing.new_key())
                except FileExistsError:
                    pass  # another process (the daemon, `sms-outbox web`) made it just now
                except OSError as exc:
                    raise ConfigError(
                        f"setting security.keys_dir: cannot create {path}: {exc.strerror}"
                    ) from None
                key = _read(path)
            self._daemon_key = key
        assert self._daemon_key is not None
        return self._daemon_key


class Signatures:
    """Checks the signature of every message before it is sent, and signs what the daemon makes."""

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys

    def check(self, doc: Mapping[str, Any]) -> Problem | None:
        """A broadcast's message must carry the daemon's signature; any other, its user's."""
        if doc.get("campaign") is not None:
            # The retired form still verifies here: a broadcast message's id is checked
            # against its signed campaign and number apart (jobs.rules.replay).
            return signing.check(self.keys.daemon_key(), doc, "the daemon", retired_ok=True)
        user = doc.get("user")
        key = self.keys.user_key(user) if isinstance(user, str) else None
        if "priority_requested" in doc:
            # Intake lowered the priority to the user's grant; the producer signed what it asked.
            doc = {**doc, "priority": doc["priority_requested"]}
        return signing.check(key, doc, f"user {user!r}")

    def sign_child(self, doc: Mapping[str, Any]) -> str:
        return signing.sign(self.keys.daemon_key(), doc)

    def seal(self, doc: Mapping[str, Any], origin: str) -> str:
        """The daemon's seal of a document it admits (`origin` admitted) or makes (`made`)."""
        return seal.seal(self.keys.daemon_key(), doc, origin)

    def sealed(self, doc: Mapping[str, Any], origin: str | None = None) -> bool:
        """Whether `doc` carries the daemon's seal (see jobs/rules/seal.py)."""
        return seal.sealed(self.keys.daemon_key(), doc, origin)

    def seal_progress(self, campaign: str, after: str, total: int) -> str:
        return replay.seal(self.keys.daemon_key(), campaign, after, total)

    def progress_sealed(self, campaign: str, after: Any, total: Any, given: Any) -> bool:
        return replay.sealed(self.keys.daemon_key(), campaign, after, total, given)


def _read(path: Path) -> str | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return text or None


def _write_new(path: Path, key: str) -> None:
    """Create `path` holding `key`, whole or not at all: the key is written to a private file
    first and linked into place, so a process racing to create the same key reads all of it
    (FileExistsError for the loser)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    draft = path.with_name(f".draft-{os.getpid()}-{secrets.token_hex(8)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(key + "\n")
        os.link(draft, path)
    finally:
        draft.unlink(missing_ok=True)
