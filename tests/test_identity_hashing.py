"""Normalisation + SHA-256 against the platforms' documented examples."""

import hashlib

import pytest

from sst.identity import hashing as h


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def test_sha256_hex_documented_vector():
    # Snap's CAPI docs (same trim+lowercase rule as Meta's `em`): Person@Example.com ->
    assert h.sha256_hex(h.normalize_email(" Person@Example.com ")) == (
        "542d240129883c019e106e3b1b2d3f3cb3537c43c425364de8e951d5a3083345")


def test_phone_documented_vector():
    # "+44 844 412 4653" -> "448444124653" -> dc008fda... (Snap docs, Meta's `ph` rule).
    assert h.meta_phone("+44 844 412 4653") == "448444124653"
    assert h.sha256_hex("448444124653").startswith("dc008fda46e2e64002cf2f82a4906236282d4")


@pytest.mark.parametrize(("raw", "expected"), [
    ("  John.Doe@Example.COM ", "john.doe@example.com"),
    ("jo hn@example.com", "john@example.com"),
    ("no-at-sign", None),
    ("a@b@c.com", None),
    ("", None),
    (None, None),
    ("cloudy.sanfrancisco+shopping@gmail.com", "cloudy.sanfrancisco+shopping@gmail.com"),
])
def test_normalize_email_meta(raw, expected):
    assert h.normalize_email(raw) == expected


@pytest.mark.parametrize(("raw", "expected"), [
    # Google Data Manager formatting guide examples.
    ("cloudy.sanfrancisco+shopping@gmail.com", "cloudysanfrancisco@gmail.com"),
    ("user.name+NYC@Example.com", "user.name+nyc@example.com"),
    ("Jane.Doe@GoogleMail.com", "janedoe@googlemail.com"),
])
def test_normalize_email_google(raw, expected):
    assert h.normalize_email(raw, gmail_dots=True) == expected


def test_google_documented_hashes():
    assert h.sha256_hex(h.normalize_email("cloudy.sanfrancisco+shopping@gmail.com",
                                          gmail_dots=True)) == (
        "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4")
    # "(800)555-0100" (US) -> "+18005550100"
    assert h.e164_plus("(800)555-0100", "US") == "+18005550100"
    assert h.sha256_hex("+18005550100") == (
        "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30")


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("+1 (650) 555-1212", None, "16505551212"),
    ("(650)555-1212", "US", "16505551212"),  # Meta's doc example, country code added
    ("0044 20 7946 0958", None, "442079460958"),
    ("+33 6 12 34 56 78", None, "33612345678"),
    ("123", None, None),
    ("", None, None),
])
def test_meta_phone(raw, region, expected):
    assert h.meta_phone(raw, region) == expected


def test_e164_plus():
    assert h.e164_plus("+1 650-555-1212") == "+16505551212"
    assert h.e164_plus("+1234567890123456") is None  # more than 15 digits


@pytest.mark.parametrize(("fn", "raw", "expected"), [
    (h.meta_name, " Mary ", "mary"),
    (h.meta_name, "Valéry", "valéry"),
    (h.meta_name, "O'Brien-Smith", "obriensmith"),
    (h.meta_city, "New York", "newyork"),
    (h.meta_city, "St. Louis", "stlouis"),
    (h.meta_state, "California", "ca"),
    (h.meta_state, "CA", "ca"),
    (h.meta_state, "Île-de-France", "îledefrance"),
    (h.meta_zip, "94025-1234", "94025"),
    (h.meta_zip, "M1 1AE", "m11ae"),
    (h.meta_country, "United States", "us"),
    (h.meta_country, "US", "us"),
    (h.meta_country, "Atlantis Republic", None),
])
def test_meta_normalisers(fn, raw, expected):
    assert fn(raw) == expected


def test_zip_outside_us_keeps_digits():
    assert h.meta_zip("12345-6789", country="DE") == "123456789"


def test_external_id_lower_trim_and_passthrough():
    assert h.external_id("  User-ABC ") == sha("user-abc")
    digest = sha("x")
    assert h.external_id(digest.upper()) == digest
    assert h.external_id(None) is None


def test_looks_hashed():
    assert h.looks_hashed(sha("a"))
    assert not h.looks_hashed("abc")
    assert not h.looks_hashed(None)


def test_hash_normalized_passes_digests_through():
    assert h.hash_normalized(sha("a")) == sha("a")
    assert h.hash_normalized("a") == sha("a")
    assert h.hash_normalized(None) is None


@pytest.mark.parametrize(("raw", "expected"), [
    ("Al.ice$+Apple@Example.Com", "alice@example.com"),  # Reddit's own example
    (" alice@example.com ", "alice@example.com"),
    ("first.last@outlook.com", "firstlast@outlook.com"),  # every domain, not only gmail
    ("+tag@example.com", None),
    ("not-an-email", None),
    (None, None),
])
def test_reddit_email(raw, expected):
    assert h.reddit_email(raw) == expected


def test_reddit_documented_hash():
    # Reddit: alice@example.com and Al.ice$+Apple@Example.Com hash to ff8d9819...
    expected = "ff8d9819fc0e12bf0d24892e45987e249a28dce836a85cad60e28eaaa8c6d976"
    assert sha("alice@example.com") == expected
    assert h.hashed("Al.ice$+Apple@Example.Com", h.reddit_email) == expected
