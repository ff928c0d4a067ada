import re

import pytest

from sst.identity.crypto import (
    CIPHER_INFO,
    LOOKUP_INFO,
    DecryptError,
    PhoneCipher,
    derive_key,
    new_user_id,
    phone_lookup_key,
)

SECRET = "s3cret-app-key"
PHONE = "+16505551212"


def test_lookup_key_is_deterministic_hex():
    key = phone_lookup_key(PHONE, SECRET)
    assert key == phone_lookup_key(PHONE, SECRET)
    assert re.fullmatch(r"[0-9a-f]{64}", key)


def test_lookup_key_differs_per_phone_and_secret():
    key = phone_lookup_key(PHONE, SECRET)
    assert key != phone_lookup_key("+16505551213", SECRET)
    assert key != phone_lookup_key(PHONE, "rotated-secret")


def test_lookup_key_is_not_a_plain_hash():
    import hashlib

    assert phone_lookup_key(PHONE, SECRET) != hashlib.sha256(PHONE.encode()).hexdigest()
    assert PHONE not in phone_lookup_key(PHONE, SECRET)


def test_derived_keys_are_separated_by_label():
    assert derive_key(SECRET, LOOKUP_INFO) != derive_key(SECRET, CIPHER_INFO)
    assert len(derive_key(SECRET, LOOKUP_INFO)) == 32


def test_empty_secret_refused():
    with pytest.raises(ValueError):
        phone_lookup_key(PHONE, "")
    with pytest.raises(ValueError):
        PhoneCipher("")


def test_cipher_round_trip_and_randomised():
    cipher = PhoneCipher(SECRET)
    token = cipher.encrypt(PHONE)
    assert PHONE not in token
    assert cipher.decrypt(token) == PHONE
    assert cipher.encrypt(PHONE) != token  # random IV


def test_tampered_token_fails():
    cipher = PhoneCipher(SECRET)
    token = cipher.encrypt(PHONE)
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    with pytest.raises(DecryptError):
        cipher.decrypt(flipped)
    with pytest.raises(DecryptError):
        cipher.decrypt(token[:-4])
    with pytest.raises(DecryptError):
        cipher.decrypt("not a token")


def test_decrypt_error_hides_the_token():
    with pytest.raises(DecryptError) as exc:
        PhoneCipher(SECRET).decrypt("gAAAAAbogus")
    assert "bogus" not in str(exc.value)


def test_other_secret_cannot_decrypt():
    token = PhoneCipher(SECRET).encrypt(PHONE)
    with pytest.raises(DecryptError):
        PhoneCipher("rotated-secret").decrypt(token)


def test_rotation_keeps_old_tokens_readable():
    old_token = PhoneCipher(SECRET).encrypt(PHONE)
    rotated = PhoneCipher("rotated-secret", old_secrets=[SECRET])
    assert rotated.decrypt(old_token) == PHONE
    new_token = rotated.rotate(old_token)
    assert PhoneCipher("rotated-secret").decrypt(new_token) == PHONE
    with pytest.raises(DecryptError):
        PhoneCipher(SECRET).decrypt(new_token)


def test_cipher_key_is_not_the_lookup_key():
    # A cipher key leaking through the lookup hash (or vice versa) would be a design bug.
    import base64

    from cryptography.fernet import Fernet

    lookup_as_fernet = Fernet(base64.urlsafe_b64encode(derive_key(SECRET, LOOKUP_INFO)))
    token = PhoneCipher(SECRET).encrypt(PHONE)
    with pytest.raises(Exception):  # noqa: B017
        lookup_as_fernet.decrypt(token.encode())


def test_cipher_repr_hides_secret():
    assert SECRET not in repr(PhoneCipher(SECRET))


def test_new_user_id_shape_and_uniqueness():
    ids = {new_user_id() for _ in range(2000)}
    assert len(ids) == 2000
    for uid in list(ids)[:50]:
        assert re.fullmatch(r"u_[0-9A-Za-z]{22}", uid)
