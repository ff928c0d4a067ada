"""The bot verdict: is this event's visitor a crawler, a headless browser or a monitor?

Contract §3: the verdict is read from the *visitor's* user agent, never from the HTTP
library a backend uses to call sst:

- `context.userAgent` when the message has one;
- else the request's `User-Agent`, but only for a request a browser made (an Origin header,
  the pixel, or the sst cookie);
- a server-side request without `context.userAgent` is never a bot.

HTTP client libraries (curl, python-requests, Go-http-client, axios, node-fetch, okhttp,
Java, ...) are backends, not bots: crawlerdetect's list has them, so they are let through
before it is asked. Headless browsers are bots.

Bounded cost (security review H1): crawlerdetect runs one regex of ~1,500 alternatives,
superlinear in the input (8,000 characters took 15 s). Only the first MAX_UA_CHARS are
judged; verdicts are cached; and each request gets a time budget for crawlerdetect
(`Budget`): once a request has spent it (a batch of hundreds of distinct long user agents),
its remaining user agents are judged by the cheap keyword check alone. The data is stored
either way; the verdict only decides forwarding.
"""

from __future__ import annotations

import re
import time
from functools import lru_cache

MAX_UA_CHARS = 512  # the contract's limit: the verdict reads no more than this
BUDGET_SECONDS = 0.25  # crawlerdetect time one request may spend, all its messages together

# HTTP client libraries and server SDKs: a product name at the very start (anchored, so the
# match is linear). These are backends calling sst, not crawlers.
_LIBRARY = re.compile(
    r"(?:curl|python-requests|python-urllib3?|python-httpx|aiohttp|httpx|Go-http-client|"
    r"axios|node-fetch|undici|got|okhttp|Java|Apache-HttpClient|Jersey|Dalvik|"
    r"PostmanRuntime|insomnia|Ruby|Faraday|rest-client|Guzzle(?:Http)?|PHP|Dart|"
    r"analytics-[a-z]+|Segment|RudderStack|rudder-[a-z]+|libcurl|WinHttp|"
    r"Microsoft\.Net|\.NET|RestSharp|reqwest|hyper|Python|Deno|Bun)(?:[/ ]|$)",
    re.IGNORECASE)

# A short, linear keyword check: catches the common crawlers without crawlerdetect, and is
# what a request past its budget falls back to. Named bots only: a bare "bot" would catch
# phones such as the CUBOT X19, which crawlerdetect's exclusions let through.
_KEYWORDS = re.compile(
    r"(?:google|bing|yandex|duckduck|apple|ahrefs|semrush|petal|mj12|dot|gpt|cc|claude|"
    r"amazon|facebook|twitter|linkedin|slack|telegram|discord|whatsapp)bot|"
    r"crawl|spider|slurp|scrape|headless|phantomjs|puppeteer|playwright|"
    r"selenium|webdriver|lighthouse|pingdom|facebookexternalhit|mediapartners|adsbot|"
    r"ia_archiver|feedfetcher",
    re.IGNORECASE)

_crawler = None


class Budget:
    """crawlerdetect time left to one request (one per request, shared by its messages)."""

    __slots__ = ("left",)

    def __init__(self, seconds: float = BUDGET_SECONDS):
        self.left = seconds


def judged_text(user_agent: str | None) -> str:
    """The part of a user agent the verdict reads."""
    return (user_agent or "")[:MAX_UA_CHARS].strip()


def is_library(user_agent: str) -> bool:
    return _LIBRARY.match(user_agent) is not None


@lru_cache(maxsize=8192)
def _quick_verdict(text: str) -> bool | None:
    """False for an HTTP library, True for a named crawler, None when only crawlerdetect can
    tell. Cached: the keyword regex is case-insensitive over the whole text (~10 µs for a
    browser's user agent), and a site's visitors share a few hundred user agents."""
    if is_library(text):
        return False
    if _KEYWORDS.search(text):
        return True
    return None


@lru_cache(maxsize=8192)
def _full_verdict(text: str) -> bool:
    global _crawler
    if _crawler is None:
        from crawlerdetect import CrawlerDetect

        _crawler = CrawlerDetect()
    return bool(_crawler.is_crawler(text))


def is_bot_ua(user_agent: str | None, budget: Budget | None = None) -> bool:
    """Verdict for one visitor user agent (already chosen by `visitor_user_agent`)."""
    text = judged_text(user_agent)
    if not text:
        return False  # no user agent is no evidence of a crawler
    quick = _quick_verdict(text)
    if quick is not None:
        return quick
    if budget is None:
        return _full_verdict(text)
    if budget.left <= 0:
        # Past the request's budget (an attacker's batch, or a very odd one): the keyword
        # check above has spoken. Not a bot is the side that loses no valid data.
        return False
    started = time.perf_counter()
    verdict = _full_verdict(text)
    budget.left -= time.perf_counter() - started  # a cached verdict costs microseconds
    return verdict


def visitor_user_agent(context_ua: str | None, request_ua: str | None,
                       browser: bool) -> str | None:
    """The visitor's user agent: context.userAgent, else a browser request's own."""
    if context_ua:
        return context_ua
    return request_ua if browser and request_ua else None
