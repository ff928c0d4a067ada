"""Webhook: stored message as body, verifiable HMAC signature, status classification."""

import hashlib
import hmac
import json
from dataclasses import asdict
from datetime import UTC, datetime

import pytest
import requests
import responses

from sst import __version__, connectors
from sst.connectors.base import EventData
from support.connectors import (
    ERROR_BODY_FIELDS,
    ConnectorHarness,
    Platform,
    check_error_body,
    connector_factory,
    error_body_ids,
    harness_connector,
    run,
)

URL = "https://hooks.example/sst"
MESSAGE = {"type": "track", "event": "Order Completed", "messageId": "m-1",
           "properties": {"total": 9.5, "name": "Crème brûlée"},
           "context": {"ip": "203.0.113.7", "clickIds": {"gclid": "Cj0"}}}


conn = connector_factory("webhook", url=URL, secret="whsec")


def ev():
    return EventData(message_id="m-1", type="track", event="Order Completed",
                     platform_event="Order Completed", event_time=datetime.now(UTC),
                     message=MESSAGE)


WEBHOOK = Platform(
    name="webhook",
    settings={"url": "https://hooks.test/sst", "secret": "whsec-secret"},
    api_url="https://hooks.test/sst",
    success=(200, {"ok": True}),
)


class TestWebhookHarness(ConnectorHarness):
    platform = WEBHOOK


ERROR_BODIES = [
    (408, {}, "retryable", "HTTP 408"),
    (404, {}, "permanent", "HTTP 404"),
    (302, {}, "permanent", "HTTP 302"),
]


@pytest.mark.parametrize(ERROR_BODY_FIELDS, ERROR_BODIES, ids=error_body_ids(ERROR_BODIES))
def test_error_body(status, body, kind, code):
    check_error_body(WEBHOOK, status, body, kind, code)


def test_timeout_setting_is_passed_to_requests():
    conn = harness_connector(WEBHOOK, timeout=2.5)
    seen = {}

    class Session(requests.Session):
        def request(self, *a, **kw):
            seen.update(kw)
            raise requests.exceptions.ConnectTimeout("t")

    conn.session = Session()
    res = run(WEBHOOK, None, conn=conn)
    assert seen["timeout"] == 2.5
    assert res.outcomes["msg-1"].kind == "retryable"


def test_signature_verifies_with_hmac():
    c = conn()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, status=204)
        res = c.send([ev()])
        sent = rsps.calls[0].request
    raw = sent.body
    expected = "sha256=" + hmac.new(b"whsec", raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(sent.headers["X-SST-Signature"], expected)
    assert json.loads(raw) == MESSAGE
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["User-Agent"] == f"sst/{__version__}"
    assert res.outcomes["m-1"].kind == "success"
    assert "whsec" not in json.dumps(asdict(res.exchanges[0]), default=str)


def test_one_request_per_event():
    events = [ev(), ev()]
    events[1].message_id = "m-2"
    assert [r.message_ids for r in conn().build_requests(events)] == [["m-1"], ["m-2"]]


def test_url_is_required_and_base_url_refused():
    with pytest.raises(connectors.ConnectorConfigError, match="url"):
        connectors.validate_destination({"name": "h", "connector": "webhook", "secret": "s"})
    with pytest.raises(connectors.ConnectorConfigError, match="base_url"):
        connectors.validate_destination({"name": "h", "connector": "webhook", "url": URL,
                                         "secret": "s", "base_url": "https://x.example"})


def test_test_mode_header():
    (req,) = conn(test=True).build_requests([ev()])
    assert req.headers["X-SST-Test"] == "true"


@pytest.mark.parametrize(("status", "kind"), [(200, "success"), (202, "success"),
                                              (408, "retryable"), (425, "retryable"),
                                              (429, "retryable"), (502, "retryable"),
                                              (400, "permanent"), (410, "permanent")])
def test_status_classification(status, kind):
    c = conn()
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, URL, status=status)
        assert c.send([ev()]).outcomes["m-1"].kind == kind


def test_timestamped_signature_v2_binds_the_time():
    # Review L7: X-SST-Signature-V2 signs "<X-SST-Timestamp>.<raw body>", so a receiver that
    # refuses stale timestamps refuses a replayed capture.
    (req,) = conn().build_requests([ev()], now=1_767_000_000.7)
    raw = req.body.encode()
    assert req.headers["X-SST-Timestamp"] == "1767000000"
    expected = "sha256=" + hmac.new(b"whsec", b"1767000000." + raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(req.headers["X-SST-Signature-V2"], expected)
    assert req.headers["X-SST-Signature"] == (
        "sha256=" + hmac.new(b"whsec", raw, hashlib.sha256).hexdigest())
    # Another time, another V2 signature; the body signature does not move.
    (later,) = conn().build_requests([ev()], now=1_767_000_600)
    assert later.headers["X-SST-Signature-V2"] != req.headers["X-SST-Signature-V2"]
    assert later.headers["X-SST-Signature"] == req.headers["X-SST-Signature"]


def test_docs_receiver_code_verifies_and_refuses_stale():
    # The verification code in docs/operations.md, run as written.
    import re
    import time
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "operations.md").read_text()
    section = doc.split("## Webhook signature", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope: dict = {}
    exec(code, scope)  # noqa: S102 - our own documentation's example
    verify = scope["verify"]
    (req,) = conn().build_requests([ev()])
    assert verify(b"whsec", req.body.encode(), req.headers)
    assert not verify(b"whsec", req.body.encode() + b" ", req.headers)
    (old,) = conn().build_requests([ev()], now=time.time() - 3600)
    assert not verify(b"whsec", old.body.encode(), old.headers)
