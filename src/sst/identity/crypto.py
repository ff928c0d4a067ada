"""Phones at rest: keyed lookup hash, reversible encryption, opaque user ids.

Every key is derived from the app secret with HKDF-SHA256 and its own ``info`` label, so the
lookup hash, the cipher and the OTP code hash never share a key. Rotating the app secret
changes every derived key: lookup keys must then be recomputed from the clear numbers
(decrypt with ``PhoneCipher(new, old_secrets=[old])``) since an HMAC cannot be reversed.
"""

import base64
import hashlib
import hmac
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LOOKUP_INFO = "sst/phone-lookup/v1"
CIPHER_INFO = "sst/phone-cipher/v1"

_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_USER_ID_LEN = 22  # 62**22 > 2**128, so 16 random bytes always fit


class DecryptError(ValueError):
    """A token that was tampered with, truncated or made with another secret."""


def derive_key(secret: str, info: str, length: int = 32) -> bytes:
    """Derive a ``length``-byte subkey of the app secret for one purpose (``info``)."""
    if not secret:
        raise ValueError("secret must not be empty")
    hkdf = HKDF(algorithm=hashes.SHA256(), length=length, salt=None, info=info.encode())
    return hkdf.derive(secret.encode())


def phone_lookup_key(e164: str, secret: str) -> str:
    """Hex HMAC-SHA256 of the E.164 phone: the same phone gives the same key, never reversible."""
    key = derive_key(secret, LOOKUP_INFO)
    return hmac.new(key, e164.encode(), hashlib.sha256).hexdigest()


class PhoneCipher:
    """Fernet (AES-128-CBC + HMAC) encryption of phone numbers.

    ``old_secrets`` still decrypt, so a secret can be rotated and rows re-encrypted lazily.
    """

    def __init__(self, secret: str, old_secrets: tuple[str, ...] | list[str] = ()):
        keys = [secret, *old_secrets]
        self._fernet = MultiFernet(
            [Fernet(base64.urlsafe_b64encode(derive_key(s, CIPHER_INFO))) for s in keys]
        )

    def __repr__(self) -> str:
        return "PhoneCipher(<secret>)"

    def encrypt(self, e164: str) -> str:
        """Return an opaque token; two calls on one number give different tokens."""
        return self._fernet.encrypt(e164.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        """Return the clear number or raise DecryptError."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except (InvalidToken, UnicodeError, AttributeError) as exc:
            raise DecryptError("phone token cannot be decrypted") from exc

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the current secret."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError, AttributeError) as exc:
            raise DecryptError("phone token cannot be decrypted") from exc


def new_user_id() -> str:
    """Opaque random user id, ``"u_"`` + 22 base62 chars (128 bits). Never derived from a phone."""
    n = int.from_bytes(secrets.token_bytes(16), "big")
    chars = []
    for _ in range(_USER_ID_LEN):
        n, rem = divmod(n, 62)
        chars.append(_BASE62[rem])
    return "u_" + "".join(reversed(chars))
