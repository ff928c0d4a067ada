"""Click ids and UTM parameters from landing URLs; ad-platform cookies."""

import pytest

from sst.ingest.touch import CLICK_ID_PARAMS, ad_cookies, page_url_of, parse_touch, referrer_of


@pytest.mark.parametrize("param", CLICK_ID_PARAMS)
def test_every_click_id_param_is_recognised(param):
    clicks, utm = parse_touch(f"https://www.example.com/landing?{param}=Abc-123_x")
    assert clicks == {param: "Abc-123_x"}
    assert utm == {}


@pytest.mark.parametrize("url, clicks, utm", [
    ("https://x.test/?gclid=G1&utm_source=google&utm_medium=cpc",
     {"gclid": "G1"}, {"utm_source": "google", "utm_medium": "cpc"}),
    ("https://x.test/?sccid=s1", {"ScCid": "s1"}, {}),  # names match case-insensitively
    ("https://x.test/?UTM_Campaign=Spring", {}, {"utm_campaign": "Spring"}),
    ("https://x.test/?fbclid=AbC", {"fbclid": "AbC"}, {}),  # values keep their case
    ("https://x.test/?gclid=first&gclid=second", {"gclid": "first"}, {}),  # first one wins
    ("https://x.test/?gclid=&fbclid=%20", {}, {}),  # blank values are not click ids
    ("https://x.test/?gclid=" + "a" * 601, {}, {}),  # too long to be a click id
    ("https://x.test/?ttclid=T%2B1%3D", {"ttclid": "T+1="}, {}),  # percent-decoded
    ("https://x.test/?fbclid=F1#utm_source=frag", {"fbclid": "F1"}, {}),  # fragment ignored
    ("https://x.test/?foo=bar", {}, {}),
    ("https://x.test/landing", {}, {}),
    ("not a url ? gclid=1", {}, {}),
    ("http://[::1/?gclid=1", {}, {}),  # unparseable: nothing, no error
    (None, {}, {}),
    ("", {}, {}),
])
def test_parse_touch(url, clicks, utm):
    assert parse_touch(url) == (clicks, utm)


def test_utm_values_are_capped():
    _, utm = parse_touch("https://x.test/?utm_term=" + "t" * 400)
    assert utm == {"utm_term": "t" * 255}


@pytest.mark.parametrize("message, url", [
    ({"context": {"page": {"url": "https://a.test/"}}, "properties": {"url": "https://b.test/"}},
     "https://a.test/"),
    ({"properties": {"url": "https://b.test/"}}, "https://b.test/"),
    ({"context": {"page": "nope"}, "properties": {"url": 5}}, None),
    ({"context": None}, None),
])
def test_page_url_prefers_context_page_url(message, url):
    assert page_url_of(message) == url


def test_referrer_comes_from_context_page_or_properties():
    assert referrer_of({"context": {"page": {"referrer": "https://r.test/"}}}) == "https://r.test/"
    assert referrer_of({"properties": {"referrer": "https://p.test/"}}) == "https://p.test/"
    assert referrer_of({"context": {"page": {"referrer": ""}}}) is None


def test_ad_cookies_keeps_only_the_known_platform_cookies():
    platform = {"_fbp": "fb.1.1700000000000.123", "_fbc": "fb.1.1700000000000.AbC",
                "_ga": "GA1.1.1.2", "_ttp": "ttp1",
                "_scid": "8f2c1e4a-5b6d-4c7e-9f80-1a2b3c4d5e6f",  # Snap Pixel
                "_rdt_uuid": "1684189007728.7c73f2ae-a433-4d7b-9838-f467da98f48e",  # Reddit
                "_epik": "dj0yJnU9b2JDcFFHekV4SHJNcmVr"}  # Pinterest tag
    cookies = {**platform, "session": "secret", "_gid": "x"}
    assert ad_cookies(cookies) == platform


def test_ad_cookies_skips_empty_and_oversized_values():
    assert ad_cookies({"_fbp": "", "_ga": "g" * 256}) == {}
