import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from sst.identity.phone import InvalidPhoneError, mask_phone, normalize_phone, region_of


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [
        ("(650) 555-1212", "US", "+16505551212"),
        ("650.555.1212", "US", "+16505551212"),
        ("650-555-1212", "US", "+16505551212"),
        ("1 650 555 1212", "US", "+16505551212"),
        ("+1 (650) 555-1212", None, "+16505551212"),
        ("tel:+1-650-555-1212", None, "+16505551212"),
        ("  +16505551212  ", "US", "+16505551212"),
        ("07400 123456", "GB", "+447400123456"),
        ("+44 7400 123456", "US", "+447400123456"),
        ("00 44 7400 123456", "GB", "+447400123456"),
        ("020 7946 0018", "GB", "+442079460018"),  # fixed line: accepted
        ("0049 151 23456789", "DE", "+4915123456789"),
        ("0151 23456789", "DE", "+4915123456789"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("+33 6 12 34 56 78", "US", "+33612345678"),
        ("098765 43210", "IN", "+919876543210"),
        ("+91 98765 43210", None, "+919876543210"),
        ("(11) 96123-4567", "BR", "+5511961234567"),
        ("0412 345 678", "AU", "+61412345678"),
        ("(416) 555-0199", "CA", "+14165550199"),
    ],
)
def test_normalize_to_e164(raw, region, expected):
    assert normalize_phone(raw, region) == expected


def test_default_region_is_us():
    assert normalize_phone("(650) 555-1212") == "+16505551212"


@pytest.mark.parametrize("raw", ["", "   ", "hello", "++", "x" * 300, None, 6505551212])
def test_not_a_number(raw):
    with pytest.raises(InvalidPhoneError) as exc:
        normalize_phone(raw)
    assert exc.value.reason == "not_a_number"


def test_national_format_without_region_is_not_a_number():
    with pytest.raises(InvalidPhoneError) as exc:
        normalize_phone("650-555-1212", None)
    assert exc.value.reason == "not_a_number"


@pytest.mark.parametrize(
    ("raw", "region"),
    [
        ("+1 650 555 12121", None),  # too long
        ("+12345", None),
        ("555-1212", "US"),  # no area code
        ("07700 900123", "GB"),  # Ofcom drama range: never allocated
        ("+44 7700 900123", None),
        ("+1 123 456 7890", None),  # area codes never start with 1
    ],
)
def test_invalid_number(raw, region):
    with pytest.raises(InvalidPhoneError) as exc:
        normalize_phone(raw, region)
    assert exc.value.reason == "invalid"


def _example(region, kind):
    number = phonenumbers.example_number_for_type(region, kind)
    assert number is not None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


@pytest.mark.parametrize(
    ("region", "kind"),
    [
        ("US", PhoneNumberType.PREMIUM_RATE),  # +1 900 ...
        ("GB", PhoneNumberType.PREMIUM_RATE),
        ("DE", PhoneNumberType.PREMIUM_RATE),
        ("FR", PhoneNumberType.PREMIUM_RATE),
        ("DE", PhoneNumberType.SHARED_COST),
        ("FR", PhoneNumberType.SHARED_COST),
        ("US", PhoneNumberType.TOLL_FREE),
        ("GB", PhoneNumberType.UAN),
        ("DE", PhoneNumberType.VOICEMAIL),
        ("GB", PhoneNumberType.PAGER),
        ("GB", PhoneNumberType.PERSONAL_NUMBER),
        ("GB", PhoneNumberType.VOIP),
    ],
)
def test_rejected_types(region, kind):
    e164 = _example(region, kind)
    with pytest.raises(InvalidPhoneError) as exc:
        normalize_phone(e164, None)
    assert exc.value.reason == "not_allowed_type"


def test_premium_rate_literal():
    with pytest.raises(InvalidPhoneError) as exc:
        normalize_phone("+44 909 8790000")
    assert exc.value.reason == "not_allowed_type"


@pytest.mark.parametrize("region", ["US", "GB", "DE", "FR", "IN", "BR", "JP"])
def test_mobile_examples_accepted(region):
    e164 = _example(region, PhoneNumberType.MOBILE)
    assert normalize_phone(e164, None) == e164


def test_allowed_types_can_be_narrowed():
    with pytest.raises(InvalidPhoneError) as exc:
        normalize_phone("020 7946 0018", "GB", allowed_types=frozenset({PhoneNumberType.MOBILE}))
    assert exc.value.reason == "not_allowed_type"


def test_error_message_does_not_contain_the_number():
    with pytest.raises(InvalidPhoneError) as exc:
        normalize_phone("+44 909 8790000")
    assert "909" not in str(exc.value)


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+16505551212", "+1******1212"),
        ("+447400123456", "+44******3456"),
        ("+4915123456789", "+49*******6789"),
        ("+3524212345", "+352*****45"),  # short national number keeps 2 digits
    ],
)
def test_mask_phone(e164, masked):
    assert mask_phone(e164) == masked


@pytest.mark.parametrize("junk", ["", "garbage", None, "6505551212"])
def test_mask_phone_never_raises(junk):
    masked = mask_phone(junk)
    assert "650555" not in masked


@pytest.mark.parametrize(
    ("e164", "region"),
    [
        ("+16505551212", "US"),
        ("+14165550199", "CA"),
        ("+447400123456", "GB"),
        ("+4915123456789", "DE"),
        ("+5511961234567", "BR"),
    ],
)
def test_region_of(e164, region):
    assert region_of(e164) == region


def test_region_of_rejects_national_format():
    with pytest.raises(InvalidPhoneError):
        region_of("650-555-1212")
