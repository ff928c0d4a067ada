"""The first-party anonymous-id cookie: a random id, signed so it cannot be forged."""

from __future__ import annotations

import uuid

from itsdangerous import BadSignature, Signer

_SALT = "sst.anonymous-id"


def new_anonymous_id() -> str:
    return str(uuid.uuid4())


class CookieSigner:
    """Signs anonymous ids with the app's secret key (HMAC-SHA256 via itsdangerous)."""

    def __init__(self, secret_key: str):
        self._signer = Signer(secret_key, salt=_SALT, digest_method=_sha256(),
                              key_derivation="hmac")

    def sign(self, anonymous_id: str) -> str:
        return self._signer.sign(anonymous_id).decode()

    def unsign(self, value: str | None) -> str | None:
        """The id in a cookie value, or None when it is missing, unreadable or forged."""
        if not value or len(value) > 300:
            return None
        try:
            anon = self._signer.unsign(value).decode()
        except (BadSignature, UnicodeError, ValueError):
            return None
        return anon or None


def _sha256():
    import hashlib

    return hashlib.sha256
