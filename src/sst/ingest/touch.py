"""Click ids and UTM parameters from a landing URL, and the first-party ad cookies."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

from sst.identity.clicks import CLICK_ID_PARAMS

UTM_PARAMS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "utm_id")
# Meta, GA4, TikTok, Snap (Pixel cookie, sent as sc_cookie1), Reddit (Pixel uuid),
# Pinterest (the tag's copy of the epik click id), LinkedIn (the Insight Tag's copy of
# li_fat_id), Microsoft UET (its copy of msclkid, and its visitor id), X (its pixel's copy of
# twclid).
AD_COOKIES = ("_fbp", "_fbc", "_ga", "_ttp", "_scid", "_rdt_uuid", "_epik", "li_fat_id",
              "_uetmsclkid", "_uetvid", "_twclid")
MAX_VALUE = 600  # longer values are not click ids; the column holds this much

_CLICK_LOWER = {p.lower(): p for p in CLICK_ID_PARAMS}


def parse_touch(url: str | None) -> tuple[dict, dict]:
    """Return ({click param: value}, {utm_*: value}) found in a URL's query string.

    Parameter names match case-insensitively (ScCid arrives as sccid too); the first
    occurrence wins, as browsers' URLSearchParams.get does.
    """
    if not url or not isinstance(url, str) or "?" not in url:
        return {}, {}
    try:
        query = urlsplit(url).query
    except ValueError:
        return {}, {}
    clicks: dict = {}
    utm: dict = {}
    for key, value in parse_qsl(query, keep_blank_values=False):
        value = value.strip()
        if not value or len(value) > MAX_VALUE:
            continue
        lower = key.lower()
        param = _CLICK_LOWER.get(lower)
        if param is not None:
            clicks.setdefault(param, value)
        elif lower in UTM_PARAMS:
            utm.setdefault(lower, value[:255])
    return clicks, utm


def page_url_of(message: dict) -> str | None:
    """The page URL of a message: context.page.url, else properties.url."""
    context = message.get("context")
    if isinstance(context, dict):
        page = context.get("page")
        if isinstance(page, dict) and isinstance(page.get("url"), str):
            return page["url"]
    props = message.get("properties")
    if isinstance(props, dict) and isinstance(props.get("url"), str):
        return props["url"]
    return None


def referrer_of(message: dict) -> str | None:
    context = message.get("context")
    if isinstance(context, dict):
        page = context.get("page")
        if isinstance(page, dict) and isinstance(page.get("referrer"), str):
            return page["referrer"] or None
    props = message.get("properties")
    if isinstance(props, dict) and isinstance(props.get("referrer"), str):
        return props["referrer"] or None
    return None


def ad_cookies(cookies) -> dict:
    """The ad platforms' own first-party cookies, when the browser sent them."""
    out = {}
    for name in AD_COOKIES:
        value = cookies.get(name)
        if value and len(value) <= 255:
            out[name] = value
    return out
