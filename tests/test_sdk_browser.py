"""The vendors' browser SDKs, unmodified (tests/vendor/, from npm; scripts/fetch_sdks), in
Debian's Chromium driven by Playwright: a page on https://www.<domain> loads
@segment/analytics-next (its standalone build, with Segment's snippet) or
@rudderstack/analytics-js (its npm UMD build) with only sst's origin, https://t.<domain>,
configured. Every request the page makes goes to those two hosts, every request sst gets
(preflights included) is answered 2xx, settings come from sst, each call reaches a webhook
stub exactly once, and the SDK's anonymousId is the id in sst's server-set cookie.

Needs /usr/bin/chromium and the playwright package (scripts/browser_deps.sh and the dev
extra); without them these tests fail, they never skip.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from werkzeug.wrappers import Request, Response

from sst.delivery.worker import run_worker
from sst.extensions import db
from support.apps import make_mysql_app, truncate_all
from support.stub_platform import Reply, StubPlatform
from test_ingest_tag_browser import (  # noqa: F401  (browser, own_redis: shared fixtures)
    DESKTOP,
    DOMAIN,
    Serving,
    _make_cert,
    browser,
    events,
    eventually,
    own_redis,
    sst_cookie,
)

WRITE_KEY = "wk_sdk_browser_0123456789"
VENDOR = Path(__file__).resolve().parent / "vendor"

# Segment's own snippet (5.2.1), as its docs give it, but for the script's address: the
# npm standalone build served by the site itself, and analytics._cdn = sst (where the
# standalone build reads its settings from).
SEGMENT_PAGE = """<!doctype html><html><head><title>segment</title>
<script src="{api}/v1/sst-segment.js"></script>
<script>
!function(){var i="analytics",analytics=window[i]=window[i]||[];if(!analytics.initialize)if(analytics.invoked)window.console&&console.error&&console.error("Segment snippet included twice.");else{analytics.invoked=!0;analytics.methods=["trackSubmit","trackClick","trackLink","trackForm","pageview","identify","reset","group","track","ready","alias","debug","page","screen","once","off","on","addSourceMiddleware","addIntegrationMiddleware","setAnonymousId","addDestinationMiddleware","register"];analytics.factory=function(e){return function(){if(window[i].initialized)return window[i][e].apply(window[i],arguments);var n=Array.prototype.slice.call(arguments);if(["track","screen","alias","group","page","identify"].indexOf(e)>-1){var c=document.querySelector("link[rel='canonical']");n.push({__t:"bpc",c:c&&c.getAttribute("href")||void 0,p:location.pathname,u:location.href,s:location.search,t:document.title,r:document.referrer})}n.unshift(e);analytics.push(n);return analytics}};for(var n=0;n<analytics.methods.length;n++){var key=analytics.methods[n];analytics[key]=analytics.factory(key)}analytics.load=function(key,n){var t=document.createElement("script");t.type="text/javascript";t.async=!0;t.setAttribute("data-global-segment-analytics-key",i);t.src="/vendor/segment/standalone.js";var r=document.getElementsByTagName("script")[0];r.parentNode.insertBefore(t,r);analytics._loadOptions=n};analytics._writeKey="{key}";analytics._cdn="{api}";analytics.SNIPPET_VERSION="5.2.1";
analytics.register(sstSegment);
analytics.load("{key}", {options});
analytics.page("Pricing", {plan: "pro"});
analytics.identify("user-{tag}", {plan: "pro", email: "a@example.com"});
analytics.track("Signed Up", {plan: "pro", value: 30});
}}();
</script></head><body>segment</body></html>"""

RUDDER_PAGE = """<!doctype html><html><head><title>rudderstack</title>
<script src="/vendor/rudderstack/index.js"></script>
<script src="{api}/v1/sst-rudderstack.js"></script>
<script>
sstRudderStack.load("{key}", "{api}", {options});
rudderanalytics.page("Docs", "Pricing", {plan: "pro"});
rudderanalytics.identify("user-{tag}", {plan: "pro", email: "a@example.com"});
rudderanalytics.track("Signed Up", {plan: "pro", value: 30});
</script></head><body>rudderstack</body></html>"""

PAGES = {
    "segment": (SEGMENT_PAGE, "{}"),
    "segment-batch": (SEGMENT_PAGE, json.dumps({"integrations": {"Segment.io": {
        "deliveryStrategy": {"strategy": "batching",
                             "config": {"size": 3, "timeout": 1000,
                                        "credentials": "include"}}}}})),
    "rudder": (RUDDER_PAGE, "{}"),
    "rudder-beacon": (RUDDER_PAGE, json.dumps({"useBeacon": True,
                                               "beaconQueueOptions": {"flushQueueInterval": 500}})),
}


class Recorder:
    """WSGI middleware: each request sst got and the status it answered."""

    def __init__(self, app):
        self.app = app
        self.seen: list[dict] = []

    def __call__(self, environ, start_response):
        row = {"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
               "query": environ.get("QUERY_STRING", ""), "type": environ.get("CONTENT_TYPE"),
               "origin": environ.get("HTTP_ORIGIN"), "cookie": "sst_aid=" in environ.get(
                   "HTTP_COOKIE", ""), "auth": environ.get("HTTP_AUTHORIZATION")}
        self.seen.append(row)

        def recording(status, headers, exc_info=None):
            row["status"] = int(status.split()[0])
            row["headers"] = dict(headers)
            return start_response(status, headers, exc_info)
        return self.app(environ, recording)


def _site(env):
    def app(environ, start_response):
        req = Request(environ)
        name = req.path.strip("/")
        if name.startswith("vendor/") and (VENDOR / name[7:]).is_file() and ".." not in name:
            resp = Response((VENDOR / name[7:]).read_bytes(), mimetype="text/javascript")
        elif name.removesuffix(".html") in PAGES:
            template, options = PAGES[name.removesuffix(".html")]
            body = (template.replace("{options}", options).replace("{api}", env["api"])
                    .replace("{key}", WRITE_KEY).replace("{tag}", req.args.get("tag", "x")))
            resp = Response(body, mimetype="text/html")
        elif name == "favicon.ico":  # asked by Chromium itself; a 404 would show as an error
            resp = Response(b"", status=204)
        else:
            resp = Response("not found", status=404)
        return resp(environ, start_response)
    return app


@pytest.fixture(scope="module")
def env(mysql_url, own_redis, tmp_path_factory):  # noqa: F811
    folder = tmp_path_factory.mktemp("sdk-browser")
    tls = _make_cert(folder)
    cfg: dict = {}
    www = Serving(tls, _site(cfg))
    api = Serving(tls)
    cfg["api"] = f"https://t.{DOMAIN}:{api.port}"
    cfg["www"] = f"https://www.{DOMAIN}:{www.port}"
    with StubPlatform(Reply(200, {"ok": True})) as stub:
        app = make_mysql_app(
            mysql_url, own_redis,
            SOURCES=[{"name": "web", "write_key": WRITE_KEY, "origins": [cfg["www"]]}],
            COOKIE_DOMAIN=f".{DOMAIN}",
            DESTINATIONS=[{"name": "hook", "connector": "webhook", "url": stub.url + "/hook",
                           "secret": "s3cret", "events": {"*": "*"}}])
        truncate_all(app)
        recorder = Recorder(app)
        api.app = recorder
        cfg.update(app=app, stub=stub, recorder=recorder)
        try:
            yield cfg
        finally:
            www.close()
            api.close()
            with app.app_context():
                db.engine.dispose()


def open_page(browser, env, name, tag):  # noqa: F811
    """Open a page in a fresh browser profile; return (context, page, hosts it asked)."""
    ctx = browser.new_context(ignore_https_errors=True, user_agent=DESKTOP)
    page = ctx.new_page()
    asked, failed = [], []
    page.on("request", lambda r: asked.append(r.url))
    page.on("requestfailed", lambda r: failed.append((r.url, r.failure)))
    page.on("console", lambda m: m.type == "error" and failed.append(("console", m.text)))
    page.goto(f"{env['www']}/{name}.html?tag={tag}")
    return ctx, page, asked, failed


def check_requests(env, asked, failed, seen_from):
    hosts = {urlsplit(u).hostname for u in asked}
    assert hosts <= {f"www.{DOMAIN}", f"t.{DOMAIN}"}, hosts  # nothing to a vendor
    assert failed == []
    ours = env["recorder"].seen[seen_from:]
    bad = [(r["method"], r["path"], r.get("status")) for r in ours
           if not 200 <= (r.get("status") or 0) < 300]
    assert bad == []
    www = env["www"]
    assert all(r["headers"].get("Access-Control-Allow-Origin") == www
               for r in ours if r["origin"] == www), ours  # the page may read every answer
    return ours


def deliveries(env, message_ids):
    run_worker(env["app"], burst=True)
    hooks = [r.json() for r in env["stub"].requests if r.path == "/hook"]
    return [h for h in hooks if h.get("messageId") in message_ids]


def check_events(env, tag, anonymous_id):
    """page, identify and track of this page load: stored once each with the fields the SDK
    sent, the cookie's id as anonymousId, and delivered to the webhook exactly once each."""
    app = env["app"]
    mine = eventually(lambda: (rows := [e for e in events(app) if e.user_id == f"user-{tag}"
                                        or (e.page_url or "").endswith(f"tag={tag}")
                                        and e.anonymous_id == anonymous_id])
                      and len({e.type for e in rows}) == 3 and rows)
    assert sorted(e.type for e in mine) == ["identify", "page", "track"]
    assert {e.anonymous_id for e in mine} == {anonymous_id}
    by_type = {e.type: e for e in mine}
    track = by_type["track"]
    assert track.event == "Signed Up"
    assert track.message["properties"] == {"plan": "pro", "value": 30}
    identify = by_type["identify"].message
    # RudderStack sends an identify's traits in context.traits, Segment at the top level.
    assert (identify.get("traits") or identify["context"]["traits"])["plan"] == "pro"
    assert by_type["page"].message["properties"]["plan"] == "pro"
    assert by_type["page"].page_url.endswith(f"tag={tag}")
    ids = {e.message_id for e in mine}
    hooks = eventually(lambda: (h := deliveries(env, ids)) and len(h) >= 3 and h)
    assert sorted(h["messageId"] for h in hooks) == sorted(ids)  # exactly once each
    sent = next(h for h in hooks if h["messageId"] == track.message_id)
    assert sent["event"] == "Signed Up" and sent["properties"] == {"plan": "pro", "value": 30}
    return by_type


def cookie_id(env, ctx):
    cookie = eventually(lambda: sst_cookie(ctx))
    assert cookie["httpOnly"] and cookie["secure"] and cookie["domain"] == f".{DOMAIN}"
    return env["app"].extensions["sst"].signer.unsign(cookie["value"])


SEGMENT_ID = ("() => new Promise(r => analytics.ready(() => "
              "r(analytics.user().anonymousId())))")


@pytest.mark.parametrize("mode", ["segment", "segment-batch"])
def test_segment_analytics_next(browser, env, mode):  # noqa: F811
    before = len(env["recorder"].seen)
    ctx, page, asked, failed = open_page(browser, env, mode, mode)
    sdk_id = page.evaluate(SEGMENT_ID)
    visitor = cookie_id(env, ctx)
    assert sdk_id == visitor
    by_type = check_events(env, mode, visitor)
    assert by_type["track"].message["context"]["library"]["name"] == "analytics.js"
    ours = check_requests(env, asked, failed, before)
    paths = [(r["method"], r["path"]) for r in ours]
    assert ("GET", f"/v1/projects/{WRITE_KEY}/settings") in paths
    assert ("POST", "/v1/visitor") in paths
    posts = [r for r in ours if r["method"] == "POST" and r["path"] != "/v1/visitor"]
    if mode == "segment-batch":
        assert [r["path"] for r in posts] == ["/v1/b"]
    else:
        assert sorted(r["path"] for r in posts) == ["/v1/i", "/v1/p", "/v1/t"]
    for r in posts:  # as analytics-next 1.84 sends: text/plain, Basic auth, and our cookie
        assert r["type"].startswith("text/plain") and r["auth"].startswith("Basic ")
        assert r["cookie"] is True
    assert any(r["method"] == "OPTIONS" for r in ours)  # Authorization: preflighted
    ctx.close()


@pytest.mark.parametrize("mode", ["rudder", "rudder-beacon"])
def test_rudderstack_v3(browser, env, mode):  # noqa: F811
    before = len(env["recorder"].seen)
    ctx, page, asked, failed = open_page(browser, env, mode, mode)
    page.wait_for_function("window.sstRudderStack && sstRudderStack.anonymousId")
    visitor = cookie_id(env, ctx)
    check_events(env, mode, visitor)
    sdk_id = page.evaluate("() => rudderanalytics.getAnonymousId()")
    assert sdk_id == visitor
    ours = check_requests(env, asked, failed, before)
    assert any(r["path"] == "/sourceConfig/" and WRITE_KEY in r["query"] for r in ours)
    posts = [r["path"] for r in ours if r["method"] == "POST" and r["path"] != "/v1/visitor"]
    if mode == "rudder-beacon":
        assert set(posts) == {"/beacon/v1/batch"}
        assert all(f"writeKey={WRITE_KEY}" in r["query"] for r in ours
                   if r["path"] == "/beacon/v1/batch")
    else:
        assert sorted(posts) == ["/v1/identify", "/v1/page", "/v1/track"]
    ctx.close()
