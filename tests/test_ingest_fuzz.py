"""Hypothesis: no body, header or query string makes the ingest API answer a 5xx (MariaDB)."""

import base64
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.apps import ORIGIN, SERVER_KEY, WRITE_KEY

FUZZ = settings(max_examples=300, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

ENDPOINTS = ["/v1/track", "/v1/page", "/v1/screen", "/v1/identify", "/v1/alias", "/v1/group",
             "/v1/batch", "/v1/import"]

text = st.text(max_size=40)
scalars = (st.none() | st.booleans() | st.integers(min_value=-(10 ** 30), max_value=10 ** 30)
           | st.floats(allow_nan=False, allow_infinity=False) | text)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(text, inner, max_size=4), max_leaves=20)
times = st.one_of(st.datetimes().map(lambda d: d.isoformat()), text, st.integers())
ids = st.one_of(text, st.integers(), st.none(), st.booleans(), st.just("a" * 200))
message = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(["track", "page", "screen", "identify", "alias", "group", "x"]),
    "event": st.one_of(text, st.integers()), "name": text, "userId": ids, "anonymousId": ids,
    "messageId": ids, "previousId": ids, "groupId": ids, "timestamp": times, "sentAt": times,
    "originalTimestamp": times,
    "properties": st.one_of(json_values, st.dictionaries(text, json_values, max_size=3)),
    "traits": json_values,
    "context": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "ip": text, "userAgent": text,
        "page": st.fixed_dictionaries({}, optional={"url": st.one_of(
            text, st.sampled_from(["https://x.test/?gclid=G&utm_source=a",
                                   "http://[::1/?fbclid=F", "https://x.test/?ScCid=" + "s" * 700]
        )), "referrer": text})})),
    "writeKey": st.sampled_from([WRITE_KEY, SERVER_KEY, "", "wk_unknown_0000000000", None]),
})
bodies = st.one_of(
    message,
    st.fixed_dictionaries({"batch": st.one_of(st.lists(message, max_size=4), json_values)},
                          optional={"sentAt": times, "context": json_values,
                                    "writeKey": st.just(SERVER_KEY)}),
    json_values,
)
auth_headers = st.one_of(
    st.none(), st.just("Basic " + base64.b64encode(f"{SERVER_KEY}:".encode()).decode()),
    st.just("Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()),
    text.map(lambda t: "Basic " + t), text)
headers = st.fixed_dictionaries({}, optional={
    "Content-Type": st.sampled_from(["application/json", "text/plain", "text/plain;charset=UTF-8",
                                     "application/x-www-form-urlencoded", "multipart/form-data",
                                     "application/json; charset=latin-1", ""]),
    "Authorization": auth_headers,
    "Origin": st.sampled_from([ORIGIN, "https://evil.test", "null", "", ORIGIN + "/"]),
    "Cookie": st.one_of(text.map(lambda t: "sst_aid=" + t),
                        st.just("sst_aid=x.y; _fbp=fb.1.2.3; _ga=" + "g" * 300), text),
    "Content-Encoding": st.sampled_from(["gzip", "identity", "br", ""]),
    "User-Agent": text,
})


def latin1(headers):
    """HTTP header values travel as latin-1."""
    return {k: v.encode("latin-1", "replace").decode("latin-1").replace("\r", " ")
            .replace("\n", " ") for k, v in headers.items() if v is not None}


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), body=bodies, hdrs=headers)
def test_json_bodies_never_yield_a_5xx(mysql_client, path, body, hdrs):
    r = mysql_client.post(path, data=json.dumps(body), headers=latin1(hdrs))
    assert r.status_code < 500, (r.status_code, r.data)


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), data=st.binary(max_size=300), hdrs=headers)
def test_random_bytes_never_yield_a_5xx(mysql_client, path, data, hdrs):
    r = mysql_client.post(path, data=data, headers=latin1(hdrs))
    assert r.status_code < 500, (r.status_code, r.data)


@FUZZ
@given(path=st.sampled_from(ENDPOINTS), body=message,
       length=st.one_of(st.integers(min_value=0, max_value=2_000_000), text))
def test_a_wrong_content_length_never_yields_a_5xx(mysql_client, path, body, length):
    data = json.dumps({**body, "writeKey": SERVER_KEY}).encode()
    environ = {"CONTENT_LENGTH": str(length).encode("latin-1", "replace").decode("latin-1")}
    r = mysql_client.post(path, data=data, environ_overrides=environ)
    assert r.status_code < 500, (r.status_code, r.data)


@FUZZ
@given(kind=st.sampled_from(["track", "page", "identify", "nope"]),
       params=st.dictionaries(text, text, max_size=6),
       data=st.one_of(st.none(), text, bodies.map(
           lambda b: base64.b64encode(json.dumps(b).encode()).decode())),
       hdrs=headers)
def test_pixel_is_always_the_gif(mysql_client, kind, params, data, hdrs):
    query = dict(params)
    if data is not None:
        query["data"] = data
    r = mysql_client.get(f"/v1/pixel/{kind}", query_string=query, headers=latin1(hdrs))
    assert r.status_code == 200
    assert len(r.data) == 43
