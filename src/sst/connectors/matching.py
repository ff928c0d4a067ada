"""Hashed contact match keys under Meta's names and rules, which Snap and Pinterest share.

Meta, Snap's Conversions API and Pinterest's API for Conversions name these keys alike
(em, ph, fn, ln, ct, st, zp, country) and ask for the same normalisation before SHA-256
(docs/connectors.md; platforms.md 1.3): one place computes them for the three.
"""

from __future__ import annotations

from sst.connectors.base import EventData
from sst.connectors.fields import trait, user_email, user_phone
from sst.identity import hashing as h


def hashed_contact(e: EventData) -> dict[str, str]:
    """{key: SHA-256 hex} for the contact details the event has; absent ones are left out."""
    country = h.meta_country(trait(e, "country"))
    hashed = {
        "em": h.hashed(user_email(e), h.normalize_email),
        "ph": h.hashed(user_phone(e), h.meta_phone),
        "fn": h.hashed(trait(e, "firstName", "first_name"), h.meta_name),
        "ln": h.hashed(trait(e, "lastName", "last_name"), h.meta_name),
        "ct": h.hashed(trait(e, "city"), h.meta_city),
        "st": h.hashed(trait(e, "state"), h.meta_state),
        "zp": h.hashed(trait(e, "postalCode", "postal_code", "zip"), h.meta_zip,
                       country=country),
        "country": h.hash_normalized(country),
    }
    return {k: v for k, v in hashed.items() if v}
