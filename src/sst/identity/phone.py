"""Phone numbers: E.164 normalisation, masking for logs, region lookup.

Accepted number types (``ALLOWED_TYPES``): MOBILE, FIXED_LINE_OR_MOBILE and FIXED_LINE.
NANP numbers (+1) always come back as FIXED_LINE_OR_MOBILE, so the line type cannot be
decided offline there anyway; fixed lines elsewhere are accepted because some carriers
deliver SMS to them (text-to-speech) and refusing them offline would lock out real users.
Twilio decides at send time (Verify ``skip_sms_to_landlines``, Messages error 21614).

Rejected: PREMIUM_RATE and SHARED_COST (the caller pays: SMS-pumping targets), TOLL_FREE
(cannot receive SMS), UAN, VOICEMAIL, PAGER, PERSONAL_NUMBER (forwarding numbers, a classic
fraud vector), VOIP (cheap throwaway numbers, OWASP anti-automation advice) and UNKNOWN.
"""

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

from sst.config import DEFAULT_PHONE_REGION

ALLOWED_TYPES = frozenset(
    {
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.FIXED_LINE,
    }
)

# phonenumbers itself refuses longer input; checking first keeps the error code ours.
_MAX_INPUT = 250


class InvalidPhoneError(ValueError):
    """A phone number we refuse. ``reason`` is a stable code for the API response."""

    def __init__(self, reason: str, message: str | None = None):
        # The message never contains the input: it may reach a log line.
        super().__init__(message or reason)
        self.reason = reason  # "not_a_number" | "invalid" | "not_allowed_type"


def _parse(raw: str, default_region: str | None) -> phonenumbers.PhoneNumber:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > _MAX_INPUT:
        raise InvalidPhoneError("not_a_number", "phone number missing or too long")
    try:
        return phonenumbers.parse(raw, default_region)
    except NumberParseException as exc:
        raise InvalidPhoneError("not_a_number", "phone number could not be parsed") from exc


def normalize_phone(
    raw: str,
    default_region: str | None = DEFAULT_PHONE_REGION,
    *,
    allowed_types: frozenset[int] = ALLOWED_TYPES,
) -> str:
    """Return ``raw`` as E.164 (``+16505551212``) or raise InvalidPhoneError.

    ``default_region`` applies to national formats; ``None`` requires a leading ``+``.
    """
    number = _parse(raw, default_region)
    # Validate before formatting: format_number happily returns junk E.164 for invalid input.
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneError("invalid", "phone number is not valid")
    if phonenumbers.number_type(number) not in allowed_types:
        raise InvalidPhoneError("not_allowed_type", "phone number type is not accepted")
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


def mask_phone(e164: str) -> str:
    """Mask a phone for logs and display: ``+16505551212`` -> ``+1******1212``. Never raises."""
    try:
        number = phonenumbers.parse(e164, None)
        prefix = f"+{number.country_code}"
        national = phonenumbers.national_significant_number(number)
    except (NumberParseException, TypeError, AttributeError):
        digits = "".join(ch for ch in str(e164) if ch.isdigit())
        return "***" + digits[-2:] if len(digits) >= 8 else "***"
    keep = 4 if len(national) >= 8 else 2
    if len(national) <= keep:
        return prefix + "*" * len(national)
    return prefix + "*" * (len(national) - keep) + national[-keep:]


def region_of(e164: str) -> str:
    """ISO 3166 region of an E.164 number (``"US"``, ``"CA"``...), ``"ZZ"`` if unknown."""
    number = _parse(e164, None)
    return phonenumbers.region_code_for_number(number) or "ZZ"
