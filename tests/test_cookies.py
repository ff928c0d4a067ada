"""The signed first-party anonymous-id cookie."""

import uuid

import pytest

from sst.cookies import CookieSigner, new_anonymous_id

SIGNER = CookieSigner("test-secret-key-0123456789")


def test_signed_id_round_trips():
    assert SIGNER.unsign(SIGNER.sign("visitor-1")) == "visitor-1"


def test_new_anonymous_id_is_a_random_uuid():
    first, second = new_anonymous_id(), new_anonymous_id()
    assert first != second
    assert str(uuid.UUID(first)) == first


def test_ids_with_the_separator_round_trip():
    assert SIGNER.unsign(SIGNER.sign("a.b.c")) == "a.b.c"


def test_a_value_signed_with_another_secret_is_refused():
    other = CookieSigner("another-secret-key-987654")
    assert SIGNER.unsign(other.sign("visitor-1")) is None


def test_a_tampered_id_is_refused():
    value = SIGNER.sign("visitor-1")
    assert SIGNER.unsign("visitor-2" + value[len("visitor-1"):]) is None


def test_a_tampered_signature_is_refused():
    value = SIGNER.sign("visitor-1")
    last = "A" if value[-1] != "A" else "B"
    assert SIGNER.unsign(value[:-1] + last) is None


@pytest.mark.parametrize("value", [None, "", "visitor-1", "visitor-1.", ".sig", "x" * 301,
                                   "\udcff.abc", "ü.ä"])
def test_unreadable_values_are_refused(value):
    assert SIGNER.unsign(value) is None


def test_the_signature_does_not_reveal_the_secret_or_vary():
    assert SIGNER.sign("v") == SIGNER.sign("v")
    assert "test-secret" not in SIGNER.sign("v")
