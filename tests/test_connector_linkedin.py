"""LinkedIn Conversions API: exact BATCH_CREATE payload after LinkedIn's documented example,
versioned headers, li_fat_id from the click or the Insight Tag's cookie, per-element
outcomes and counts, LinkedIn's error bodies."""

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses

from sst import connectors
from sst.connectors.base import ClickId, EventData

T = datetime(2026, 3, 1, 12, 0, 5, 900000, tzinfo=UTC)
URL = "https://api.linkedin.com/rest/conversionEvents"
LI_FAT_ID = "df5gf5-gh6t7-ph4j7h-fgf6n1"  # LinkedIn's example value


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


def conn(**extra):
    raw = {"name": "li", "connector": "linkedin", "access_token": "AQV-li-secret/+token",
           **extra}
    return connectors.get("linkedin")(connectors.validate_destination(raw), requests.Session())


def ev(**kw):
    base = dict(
        message_id="abc12345", type="track", event="Order Completed", platform_event="104012",
        event_time=T,
        properties={"order_id": "o-9", "revenue": 1500, "currency": "usd"},
        traits={"firstName": "Mike", "lastName": "Smith", "company": "Microsoft",
                "title": "Software Engineer", "address": {"country": "United States"}},
        user_id="U-1", ip="203.0.113.7", user_agent="Mozilla/5.0",
        page_url="https://shop.example/thanks",
        click_ids={"li_fat_id": ClickId(LI_FAT_ID, T - timedelta(days=2))},
        cookies={"li_fat_id": "older-cookie-value"},
        email=" Mike.Smith@Example.com ",
    )
    base.update(kw)
    return EventData(**base)


def test_exact_payload_and_headers():
    (req,) = conn().build_requests([ev()])
    assert req.url == URL
    assert req.headers == {
        "Content-Type": "application/json",
        "Authorization": "Bearer AQV-li-secret/+token",
        "LinkedIn-Version": "202603",
        "X-Restli-Protocol-Version": "2.0.0",
        "X-RestLi-Method": "BATCH_CREATE",
    }
    assert json.loads(req.body) == {"elements": [{
        "conversion": "urn:lla:llaPartnerConversion:104012",
        "conversionHappenedAt": 1772366405900,  # epoch milliseconds
        "conversionValue": {"currencyCode": "USD", "amount": "1500.0"},
        "eventId": "abc12345",
        "user": {
            "userIds": [
                {"idType": "SHA256_EMAIL", "idValue": sha("mike.smith@example.com")},
                {"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID", "idValue": LI_FAT_ID},
            ],
            "userInfo": {"firstName": "Mike", "lastName": "Smith", "companyName": "Microsoft",
                         "title": "Software Engineer", "countryCode": "US"},
        },
    }]}


def test_api_version_setting_and_its_check():
    (req,) = conn(api_version="202511").build_requests([ev()])
    assert req.headers["LinkedIn-Version"] == "202511"
    with pytest.raises(connectors.ConnectorConfigError, match="api_version"):
        conn(api_version="2025-11")


def test_rule_urn_passes_through_and_other_names_are_skipped():
    (req,) = conn().build_requests([ev(platform_event="urn:lla:llaPartnerConversion:77")])
    assert json.loads(req.body)["elements"][0]["conversion"] == \
        "urn:lla:llaPartnerConversion:77"
    assert "conversion rule" in conn().skip_reason(ev(platform_event="Purchase"))


def test_li_fat_id_cookie_when_no_click_was_seen():
    (req,) = conn().build_requests([ev(click_ids={})])
    ids = json.loads(req.body)["elements"][0]["user"]["userIds"]
    assert ids[1] == {"idType": "LINKEDIN_FIRST_PARTY_ADS_TRACKING_UUID",
                      "idValue": "older-cookie-value"}


def test_match_keys_and_empty_user_ids():
    c = conn()
    names_only = ev(email=None, click_ids={}, cookies={})
    assert c.skip_reason(names_only) is None
    (req,) = c.build_requests([names_only])
    user = json.loads(req.body)["elements"][0]["user"]
    assert user["userIds"] == []  # LinkedIn wants the list even when empty
    assert user["userInfo"]["firstName"] == "Mike"
    bare = ev(email=None, click_ids={}, cookies={}, traits={"firstName": "Mike"})
    assert "no email, li_fat_id" in c.skip_reason(bare)


def test_company_trait_as_segment_object():
    traits = {"firstName": "Mike", "lastName": "Smith", "company": {"name": "Contoso"}}
    (req,) = conn().build_requests([ev(traits=traits)])
    info = json.loads(req.body)["elements"][0]["user"]["userInfo"]
    assert info == {"firstName": "Mike", "lastName": "Smith", "companyName": "Contoso"}


def test_no_value_without_currency():
    (req,) = conn().build_requests([ev(properties={"revenue": 3})])
    assert "conversionValue" not in json.loads(req.body)["elements"][0]


def test_batches_of_5000_and_base_url():
    reqs = conn(base_url="http://stub.local/").build_requests(
        [ev(message_id=f"m{i}") for i in range(5001)])
    assert [len(r.message_ids) for r in reqs] == [5000, 1]
    assert reqs[0].url == "http://stub.local/rest/conversionEvents"


def test_too_old_cutoff_is_90_days():
    c = conn()
    assert c.too_old(ev(), T + timedelta(days=89)) is None
    assert "too old" in c.too_old(ev(), T + timedelta(days=90))


def send(status, body, n=1, **kw):
    now = datetime.now(UTC)
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, status=status, json=body, **kw)
        return conn().send([ev(message_id=f"m{i}", event_time=now) for i in range(n)])


def test_partial_batch_answer_gives_per_event_outcomes_and_counts():
    body = {"elements": [{"status": 201}, {"status": 400, "error": {
        "status": 400, "message": "conversionHappenedAt is too old"}}, {"status": 201}]}
    res = send(200, body, n=3, headers={"x-li-uuid": "LI-UUID-1"})
    assert [res.outcomes[f"m{i}"].kind for i in range(3)] == ["success", "permanent", "success"]
    assert "too old" in res.outcomes["m1"].error
    ack = res.exchanges[0].acknowledgement
    assert (ack.accepted, ack.rejected, ack.request_id) == (2, 1, "LI-UUID-1")
    assert ack.reasons == ["conversionHappenedAt is too old"]
    assert res.exchanges[0].request_headers["Authorization"] == "Bearer ***"


def test_an_element_missing_from_the_answer_is_not_success():
    res = send(200, {"elements": [{"status": 201}]}, n=2)
    assert res.outcomes["m0"].kind == "success"
    assert res.outcomes["m1"].kind == "permanent"


def test_error_body_code_and_message():
    res = send(401, {"status": 401, "serviceErrorCode": 65601,
                     "code": "REVOKED_ACCESS_TOKEN",
                     "message": "The token used in the request has been revoked by the user"})
    out = res.outcomes["m0"]
    assert (out.kind, out.code) == ("permanent", "REVOKED_ACCESS_TOKEN")
    assert "revoked" in out.error
    assert res.exchanges[0].acknowledgement.reasons[0].startswith("The token")


# --- the shared harness (tests/support/connectors.py) and LinkedIn's own error bodies ------

from support.connectors import (  # noqa: E402
    ERROR_BODY_FIELDS,
    ConnectorHarness,
    Platform,
    check_error_body,
    error_body_ids,
)

LINKEDIN = Platform(
    name="linkedin",
    settings={"access_token": "AQV-linkedin-secret/+token=="},
    api_url="https://api.linkedin.com/rest/conversionEvents",
    success=(200, {"elements": [{"status": 201}]}),
    max_event_age=timedelta(days=90),
    platform_event="104012",
)


class TestLinkedInHarness(ConnectorHarness):
    platform = LINKEDIN


ERROR_BODIES = [
    (200, {"elements": [{"status": 400, "error": {"status": 400,
                                                   "message": "Invalid conversion URN"}}]},
     "permanent", "HTTP 400"),
    (200, {"elements": [{"status": 503, "error": {"message": "try later"}}]},
     "retryable", "HTTP 503"),
    (422, {"status": 422, "code": "UNPROCESSABLE_ENTITY",
           "message": "user.userIds is required"}, "permanent", "UNPROCESSABLE_ENTITY"),
    (426, {"status": 426, "code": "NONEXISTENT_VERSION",
           "message": "Requested version 20230101 is not active"}, "permanent",
     "NONEXISTENT_VERSION"),
    (429, {"status": 429, "serviceErrorCode": 101, "message": "Resource level throttle"},
     "retryable", "101"),
    (500, {"status": 500, "message": "Internal Server Error"}, "retryable", "HTTP 500"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(LINKEDIN, status, body, kind, code)
