"""Webhook signing secrets at rest: sealed with Fernet under keys from the settings.

`Sealer` wraps `cryptography`'s MultiFernet: the first configured key seals, every configured
key opens, so the sealing key itself can be rotated (put the new key first, keep the old one
until `accordwatch migrate` has re-sealed every row under the new key, then drop it). Only
sealed tokens are stored; a secret is opened when a delivery is signed, in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from services.alerts.settings import AlertsSettings


class SealingKeyMissing(ValueError):
    """No usable sealing key is configured."""


def new_sealing_key() -> str:
    """A fresh Fernet key (url-safe base64 of 32 random bytes)."""
    return Fernet.generate_key().decode()


class SecretUnreadable(ValueError):
    """A sealed secret that no configured key opens (its key was dropped too early)."""


class Sealer:
    """Seals and opens webhook secrets; the first key seals, any key opens."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SealingKeyMissing(
                "set ACCORDWATCH_WEBHOOK_SECRET_KEYS (or _FILE) to one or more Fernet keys, newest first; "
                "`accordwatch sealing-key` prints a new one"
            )
        try:
            self._fernet = MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError as exc:
            raise SealingKeyMissing(f"a webhook sealing key is not a Fernet key: {exc}") from None
        self._opened: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: AlertsSettings) -> Sealer:
        """The sealer of the configured keys."""
        return cls(settings.sealing_keys())

    def seal(self, secret: str) -> str:
        """The sealed token of a secret (what the database keeps)."""
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, token: str) -> str:
        """The secret a token seals; SecretUnreadable if no configured key opens it.

        Each token is opened once (the dispatcher signs thousands of messages a second with a
        few secrets); a token is the sealing of one secret, so what it opens to never changes.
        """
        secret = self._opened.get(token)
        if secret is not None:
            return secret
        try:
            secret = self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise SecretUnreadable("no configured key opens this sealed secret") from None
        if len(self._opened) >= 4096:
            self._opened.clear()
        self._opened[token] = secret
        return secret

    def reseal(self, token: str) -> str:
        """The same secret sealed under the first (newest) key."""
        return self._fernet.rotate(token.encode()).decode()


def signing_secrets(sealer: Sealer, current: str, previous: str | None, previous_until: datetime | None,
                    at: datetime) -> list[str]:
    """The secrets a message sent `at` is signed with: the current one, and the previous during its grace."""
    secrets = [sealer.open(current)]
    if previous is not None and previous_until is not None and at < previous_until:
        secrets.append(sealer.open(previous))
    return secrets
