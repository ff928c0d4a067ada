"""Normalisation and SHA-256 of user identifiers, per each platform's documented rules.

Meta: https://developers.facebook.com/documentation/ads-commerce/conversions-api/parameters/customer-information-parameters
Google (Data Manager): https://developers.google.com/data-manager/api/devguides/concepts/formatting
Reddit: "Manual Advanced Matching" (Reddit Ads docs; docs/connectors.md, Reddit)
We follow the docs, not Meta's Python SDK, which normalises less (see platforms.md 1.3).
Every function returns None for empty or unusable input, so callers can drop the key.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_WS = re.compile(r"\s+")
GMAIL_DOMAINS = frozenset({"gmail.com", "googlemail.com"})

# Meta asks for the 2-letter ANSI code for US states.
US_STATES = {
    "alabama": "al", "alaska": "ak", "arizona": "az", "arkansas": "ar", "california": "ca",
    "colorado": "co", "connecticut": "ct", "delaware": "de", "districtofcolumbia": "dc",
    "florida": "fl", "georgia": "ga", "hawaii": "hi", "idaho": "id", "illinois": "il",
    "indiana": "in", "iowa": "ia", "kansas": "ks", "kentucky": "ky", "louisiana": "la",
    "maine": "me", "maryland": "md", "massachusetts": "ma", "michigan": "mi", "minnesota": "mn",
    "mississippi": "ms", "missouri": "mo", "montana": "mt", "nebraska": "ne", "nevada": "nv",
    "newhampshire": "nh", "newjersey": "nj", "newmexico": "nm", "newyork": "ny",
    "northcarolina": "nc", "northdakota": "nd", "ohio": "oh", "oklahoma": "ok", "oregon": "or",
    "pennsylvania": "pa", "rhodeisland": "ri", "southcarolina": "sc", "southdakota": "sd",
    "tennessee": "tn", "texas": "tx", "utah": "ut", "vermont": "vt", "virginia": "va",
    "washington": "wa", "westvirginia": "wv", "wisconsin": "wi", "wyoming": "wy",
    "puertorico": "pr",
}

# Common spellings that are not ISO 3166-1 alpha-2 (Meta's example: "United States" -> "us").
COUNTRY_ALIASES = {
    "usa": "us", "unitedstates": "us", "unitedstatesofamerica": "us", "america": "us",
    "uk": "gb", "gbr": "gb", "unitedkingdom": "gb", "greatbritain": "gb", "england": "gb",
    "deu": "de", "germany": "de", "deutschland": "de", "fra": "fr", "france": "fr",
    "esp": "es", "spain": "es", "espana": "es", "ita": "it", "italy": "it", "italia": "it",
    "can": "ca", "canada": "ca", "aus": "au", "australia": "au", "nld": "nl",
    "netherlands": "nl", "thenetherlands": "nl", "bra": "br", "brazil": "br", "brasil": "br",
    "mex": "mx", "mexico": "mx", "ind": "in", "india": "in", "jpn": "jp", "japan": "jp",
    "che": "ch", "switzerland": "ch", "aut": "at", "austria": "at", "bel": "be",
    "belgium": "be", "irl": "ie", "ireland": "ie", "prt": "pt", "portugal": "pt",
    "swe": "se", "sweden": "se", "nor": "no", "norway": "no", "dnk": "dk", "denmark": "dk",
    "pol": "pl", "poland": "pl", "nzl": "nz", "newzealand": "nz",
}


def sha256_hex(s: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 bytes of `s`."""
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


def looks_hashed(s: str | None) -> bool:
    """True for a 64-hex-digit string (an SHA-256 digest someone already computed)."""
    return bool(s) and bool(_HEX64.match(s.strip()))


def hash_normalized(value: str | None) -> str | None:
    """SHA-256 of an already normalised value; a value that is already a digest passes through."""
    if not value:
        return None
    if looks_hashed(value):
        return value.strip().lower()
    return sha256_hex(value)


def hashed(value: str | None, normalize, **kwargs) -> str | None:
    """Normalise with `normalize` then SHA-256; a value that already is a digest passes through."""
    if value and looks_hashed(str(value)):
        return str(value).strip().lower()
    return hash_normalized(normalize(value, **kwargs))


def normalize_email(s: str | None, *, gmail_dots: bool = False) -> str | None:
    """Trim, drop all whitespace, lowercase.

    With `gmail_dots` (Google's rule), for gmail.com/googlemail.com also remove every "."
    and any "+suffix" from the local part; other domains keep dots and plus.
    """
    if not s:
        return None
    email = _WS.sub("", s).lower()
    if email.count("@") != 1:
        return None
    local, domain = email.split("@")
    if not local or "." not in domain:
        return None
    if gmail_dots and domain in GMAIL_DOMAINS:
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return None
    return f"{local}@{domain}"


def reddit_email(s: str | None) -> str | None:
    """Reddit's canonical email: lowercase, the local part cut at its first "+" and stripped
    of every character that is not a letter or digit, for every domain
    ("Al.ice$+Apple@Example.Com" -> "alice@example.com")."""
    email = normalize_email(s)
    if not email:
        return None
    local, domain = email.split("@")
    local = "".join(ch for ch in local.split("+", 1)[0] if ch.isalnum())
    return f"{local}@{domain}" if local else None


def e164_plus(phone: str | None, default_region: str | None = None) -> str | None:
    """E.164 with "+": "+" then digits only (Google and TikTok).

    Input without "+" or "00" is read with `default_region` when given (phonenumbers),
    else taken as digits that already start with the country code.
    """
    if not phone:
        return None
    s = phone.strip()
    if s.startswith("00"):
        s = "+" + s[2:]
    if not s.startswith("+") and default_region:
        try:
            import phonenumbers

            num = phonenumbers.parse(s, default_region.upper())
            s = phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
        except Exception:
            return None
    digits = re.sub(r"\D", "", s).lstrip("0")
    # E.164: at most 15 digits; shorter than 7 cannot hold a country code and a number.
    if not 7 <= len(digits) <= 15:
        return None
    return "+" + digits


def meta_phone(e164_or_raw: str | None, default_region: str | None = None) -> str | None:
    """Meta `ph`: digits only, with country code, no "+", no leading zeros."""
    plus = e164_plus(e164_or_raw, default_region)
    return plus[1:] if plus else None


def _nfc(s: str) -> str:
    return unicodedata.normalize("NFC", s)


def meta_name(s: str | None) -> str | None:
    """Meta `fn`/`ln`: lowercase, no punctuation; UTF-8 letters kept ("Valéry" -> "valéry")."""
    if not s:
        return None
    s = _nfc(s.strip().lower())
    out = "".join(ch for ch in s if ch.isalpha() or ch.isspace())
    out = _WS.sub(" ", out).strip()
    return out or None


def meta_city(s: str | None) -> str | None:
    """Meta `ct`: lowercase letters only, no punctuation, digits or spaces (newyork)."""
    if not s:
        return None
    out = "".join(ch for ch in _nfc(s.lower()) if ch.isalpha())
    return out or None


def meta_state(s: str | None) -> str | None:
    """Meta `st`: US states as their 2-letter code, others lowercase without punctuation/spaces."""
    city_like = meta_city(s)
    if not city_like:
        return None
    return US_STATES.get(city_like, city_like)


def meta_zip(s: str | None, country: str | None = None) -> str | None:
    """Meta `zp`: lowercase, no spaces or dashes; US ZIP+4 cut to the first 5 digits."""
    if not s:
        return None
    raw = s.strip().lower()
    country = (meta_country(country) if country else None) or None
    if country in (None, "us") and re.fullmatch(r"\d{5}(?:[-\s]?\d{4})?", raw):
        return raw[:5]
    out = re.sub(r"[\s\-]", "", raw)
    return out or None


def meta_country(s: str | None) -> str | None:
    """Meta `country`: ISO 3166-1 alpha-2, lowercase; unknown spellings give None."""
    if not s:
        return None
    key = "".join(ch for ch in s.lower() if ch.isalpha())
    if key in COUNTRY_ALIASES:
        return COUNTRY_ALIASES[key]
    return key if len(key) == 2 else None


def external_id(user_id: str | None) -> str | None:
    """SHA-256 of lower(trim(user_id)); a value that is already a digest passes through."""
    if user_id is None:
        return None
    norm = str(user_id).strip().lower()
    return hash_normalized(norm)


# A SHA-256 in hex, standing alone (not inside a longer hex or word): how every platform
# receives a hashed phone, email or external id.
_HASHED_TOKEN = re.compile(r"(?<![0-9A-Za-z])[0-9a-fA-F]{64}(?![0-9A-Za-z])")
MASKED_PREFIX = "sha256~"


def mask_hashes(text: str | None, key: bytes | None = None) -> str | None:
    """`text` with every SHA-256 hex replaced by a short keyed tag (M5).

    An unsalted SHA-256 of a phone is reversed by trying the 10^7 numbers of an area code,
    so the delivery ledger and /admin must not keep it. The tag (HMAC under `key`, 12 hex)
    still shows whether two requests carried the same identifier, and reverses to nothing
    without the key; with no key the value is masked outright."""
    if not text:
        return text
    import hmac

    def tag(match):
        if key is None:
            return MASKED_PREFIX + "masked"
        digest = hmac.new(key, match.group(0).lower().encode(), hashlib.sha256).hexdigest()
        return MASKED_PREFIX + digest[:12]

    return _HASHED_TOKEN.sub(tag, text)
