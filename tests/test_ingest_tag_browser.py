"""sst.js in a real browser: Debian's Chromium driven by Playwright, over HTTPS, with the
example site on www.<domain> and sst on t.<domain> (both mapped to 127.0.0.1).

Needs /usr/bin/chromium and the playwright package (scripts/browser_deps.sh and the dev
extra install them); without them these tests fail, they never skip.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import random
import shutil
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from sst.delivery.worker import run_worker
from sst.extensions import db
from sst.ingest.tag import render_example
from sst.models import ClickId, Delivery, Event, Link
from support.apps import make_mysql_app, truncate_all
from support.stub_platform import Reply, StubPlatform

CHROMIUM = os.environ.get("SST_TEST_CHROMIUM", "/usr/bin/chromium")
DOMAIN = "sst-e2e.test"
WRITE_KEY = "wk_browser_e2e_0123456789"
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-proxy-server",
               f"--host-resolver-rules=MAP *.{DOMAIN} 127.0.0.1"]
# Numbers of this run only, in case the send limits live in the shared test Redis.
_N = random.sample(range(2000, 3000), 2)
PHONE, E164 = f"+1 650 555 {_N[0]}", f"+1650555{_N[0]}"
LIMITED_PHONE = f"+1 650 555 {_N[1]}"
DESKTOP = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
           "Chrome/130.0.0.0 Safari/537.36")
MOBILE = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/130.0.0.0 Mobile Safari/537.36")
CONSENT_PAGE = """<!doctype html><html><head><title>consent</title>
<script>window.myConsent = {categoryPreferences: {Analytics: false}};</script>
<script defer src="{{API_HOST}}/v1/sst.js" data-write-key="{{WRITE_KEY}}"
 data-require-consent="Analytics" data-consent-global="myConsent"></script>
</head><body><button id="agree" onclick="sst.consent({Analytics: true, Advertising: true})">
OK</button></body></html>"""


# --- servers ---------------------------------------------------------------------------------


def _make_cert(folder: Path) -> tuple[str, str]:
    """A self-signed certificate for www. and t. of the test domain."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"www.{DOMAIN}")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(f"www.{DOMAIN}"), x509.DNSName(f"t.{DOMAIN}"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


class Serving:
    """A werkzeug HTTPS server in a thread; its WSGI app may be set after the port is known."""

    def __init__(self, tls, app=None):
        self.app = app
        self.server = make_server("127.0.0.1", 0, self._dispatch, threaded=True,
                                  ssl_context=tls)
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _dispatch(self, environ, start_response):
        return self.app(environ, start_response)

    def close(self):
        self.server.shutdown()
        self.thread.join(timeout=5)


class Recorder:
    """WSGI middleware: what the browser sent to sst (the stored rows do not show how)."""

    def __init__(self, app):
        self.app = app
        self.seen: list[dict] = []

    def __call__(self, environ, start_response):
        self.seen.append({"method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
                          "mode": environ.get("HTTP_SEC_FETCH_MODE"),
                          "type": environ.get("CONTENT_TYPE"),
                          "origin": environ.get("HTTP_ORIGIN")})
        return self.app(environ, start_response)


def _site(env):
    """The marketing site on www.: the example pages with the snippet filled in."""
    def app(environ, start_response):
        req = Request(environ)
        name = req.path.strip("/") or "landing.html"
        if name == "consent.html":
            body = CONSENT_PAGE.replace("{{API_HOST}}", env["api"]).replace(
                "{{WRITE_KEY}}", WRITE_KEY)
            resp = Response(body, mimetype="text/html")
        elif "/" in name or not (EXAMPLES / name).is_file():
            resp = Response("not found", status=404)
        elif name.endswith(".html"):
            resp = Response(render_example(EXAMPLES / name, env["api"], WRITE_KEY),
                            mimetype="text/html")
        else:
            resp = Response((EXAMPLES / name).read_bytes(), mimetype="text/css")
        return resp(environ, start_response)
    return app


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run scripts/browser_deps.sh (apt-get install "
                    "chromium)", pytrace=False)
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: pip install -e '.[dev]'", pytrace=False)
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def own_redis(redis_url, tmp_path_factory):
    """A redis-server of this module's own when the binary is here, else the shared one.

    Test sessions that run at the same time share db 15: each flushes it, and their workers
    take each other's delivery jobs (job ids repeat across fresh databases)."""
    import socket
    import subprocess

    import redis

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(binary):
        yield redis_url
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        eventually(lambda: _pings(client), timeout=10)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _pings(client):
    import redis

    try:
        return client.ping()
    except redis.ConnectionError:
        return False


@pytest.fixture(scope="module")
def env(mysql_url, own_redis, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser")
    tls = _make_cert(folder)
    outbox = folder / "otp-outbox.jsonl"
    cfg: dict = {}
    www = Serving(tls, _site(cfg))
    api = Serving(tls)
    cfg["api"] = f"https://t.{DOMAIN}:{api.port}"
    cfg["www"] = f"https://www.{DOMAIN}:{www.port}"
    with StubPlatform(Reply(200, {"events_received": 1, "ok": True})) as stub:
        app = make_mysql_app(
            mysql_url, own_redis,
            SOURCES=[{"name": "web", "write_key": WRITE_KEY, "origins": [cfg["www"]]}],
            COOKIE_DOMAIN=f".{DOMAIN}",
            IDENTITY={"otp_provider": "file", "otp_outbox": str(outbox),
                      "send_limit_ip": "5000/hour", "verify_limit_ip": "5000/hour"},
            DESTINATIONS=[
                {"name": "meta", "connector": "meta", "pixel_id": "123", "access_token": "tok",
                 "base_url": stub.url, "events": {"Signed Up": "CompleteRegistration"}},
                {"name": "hook", "connector": "webhook", "url": stub.url + "/hook",
                 "secret": "s3cret", "events": {"Signed Up": "*"}},
            ])
        truncate_all(app)
        from sst.ingest import tag as browser_module

        if "browser" not in app.blueprints:
            app.register_blueprint(browser_module.bp)
        recorder = Recorder(app)
        api.app = recorder
        cfg.update(app=app, stub=stub, outbox=outbox, recorder=recorder)
        try:
            yield cfg
        finally:
            www.close()
            api.close()
            with app.app_context():
                db.engine.dispose()


# --- helpers ---------------------------------------------------------------------------------


def eventually(check, timeout=15.0):
    """Poll until check() returns something truthy (sst answers before the browser moves on,
    but beacons and deferred sends arrive on their own time)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            assert result, f"timed out waiting for line {check.__code__.co_firstlineno}"
            return result
        time.sleep(0.1)


def events(app, **where):
    with app.app_context():
        q = select(Event).order_by(Event.id)
        for key, value in where.items():
            q = q.where(getattr(Event, key) == value)
        rows = db.session.execute(q).scalars().all()
        db.session.expunge_all()  # loaded, and usable after the context ends
        return rows


def last_code(outbox, e164):
    lines = [json.loads(x) for x in outbox.read_text().splitlines()] if outbox.exists() else []
    codes = [x["code"] for x in lines if x["to"] == e164]
    return codes[-1] if codes else None


def new_context(browser, user_agent=DESKTOP):
    # Headless Chromium says "HeadlessChrome": sst would store its events as a bot's and
    # forward none of them.
    return browser.new_context(ignore_https_errors=True, user_agent=user_agent)


def sst_cookie(context):
    return next((c for c in context.cookies() if c["name"] == "sst_aid"), None)


def verify_phone(page, env, phone, e164, *, wrong_first=False):
    """Fill the landing page's two-step form; return once the thank-you page shows."""
    page.fill("#phone", phone)
    before = last_code(env["outbox"], e164)
    page.click("#phone-form button[type=submit]")
    page.wait_for_selector("#code-form:not([hidden])")
    code = eventually(lambda: (c := last_code(env["outbox"], e164)) and c != before and c)
    if wrong_first:
        page.fill("#code", "000000" if code != "000000" else "111111")
        page.click("#code-form button[type=submit]")
        page.wait_for_selector("#form-error:not([hidden])")
        assert "code is not right" in page.inner_text("#form-error")
    page.fill("#code", code)
    page.click("#code-form button[type=submit]")
    page.wait_for_url("**/thanks.html")
    page.wait_for_selector("h1:has-text('Thank you')")


# --- tests -----------------------------------------------------------------------------------


def test_landing_to_cross_device_conversion(browser, env):
    app, www = env["app"], env["www"]
    laptop = new_context(browser)
    page = laptop.new_page()
    landing = (f"{www}/landing.html?fbclid=FB_E2E&gclid=G_E2E&ttclid=TT_E2E"
               "&utm_source=meta&utm_campaign=spring")
    page.goto(landing)

    # 1. The page view arrives with the full URL; sst sets its cookie on the shared domain.
    page_ev = eventually(lambda: events(app, type="page"))[0]
    assert page_ev.page_url == landing
    cookie = eventually(lambda: sst_cookie(laptop))
    assert cookie["domain"] == f".{DOMAIN}"
    assert cookie["httpOnly"] is True and cookie["secure"] is True
    assert cookie["sameSite"] == "Lax" and cookie["path"] == "/"
    days = (cookie["expires"] - time.time()) / 86400
    assert 399 < days <= 400
    signer = app.extensions["sst"].signer
    visitor = signer.unsign(cookie["value"])
    assert visitor and visitor == page_ev.anonymous_id
    assert page_ev.request["content_type"].startswith("text/plain")
    assert page_ev.message["messageId"] and page_ev.message["context"]["library"]["name"] == \
        "sst.js"
    assert "sst_aid" not in page.evaluate("document.cookie")  # HttpOnly: scripts never see it

    # 2. The click ids of the landing URL are the visitor's, kept server-side.
    with app.app_context():
        clicks = dict(db.session.execute(select(ClickId.param, ClickId.value).where(
            ClickId.anonymous_id == visitor)).all())
    assert clicks == {"fbclid": "FB_E2E", "gclid": "G_E2E", "ttclid": "TT_E2E"}

    # 3. The cookie survives a reload: the next page view is the same visitor.
    page.reload()
    eventually(lambda: len(events(app, type="page")) == 2)
    assert {e.anonymous_id for e in events(app, type="page")} == {visitor}
    assert signer.unsign(sst_cookie(laptop)["value"]) == visitor

    # 4. A tracked link sends its event by beacon as the page unloads, and it arrives.
    seen = len(env["recorder"].seen)
    page.click("a[data-sst-track]")
    page.wait_for_url("**/pricing.html")
    clicked = eventually(lambda: events(app, event="Pricing Link Clicked"))[0]
    assert clicked.anonymous_id == visitor
    assert clicked.message["properties"]["href"].endswith("/pricing.html")
    beacons = [r for r in env["recorder"].seen[seen:] if r["path"] == "/v1/track"]
    assert beacons and beacons[0]["mode"] == "no-cors"  # sendBeacon with a text/plain body
    assert beacons[0]["origin"] == www
    fetched = [r for r in env["recorder"].seen if r["path"] == "/v1/page"]
    assert fetched[0]["mode"] == "cors"  # fetch(credentials: include, keepalive)

    # 5. The laptop verifies the phone through the form (a wrong code first: shown in words).
    page.goto(f"{www}/landing.html")
    verify_phone(page, env, PHONE, E164, wrong_first=True)

    # 6. A second device (a new cookie jar), no ad click, verifies the same phone, converts.
    phone_ctx = new_context(browser, MOBILE)
    mobile = phone_ctx.new_page()
    mobile.goto(f"{www}/landing.html")
    verify_phone(mobile, env, PHONE, E164)
    mobile_id = signer.unsign(sst_cookie(phone_ctx)["value"])
    assert mobile_id and mobile_id != visitor
    conversion = eventually(lambda: events(app, event="Signed Up", anonymous_id=mobile_id))[0]
    with app.app_context():
        people = set(db.session.execute(select(Link.value).where(
            Link.kind == "person", Link.anonymous_id.in_([visitor, mobile_id]))).scalars())
    assert len(people) == 1

    run_worker(app, burst=True)
    with app.app_context():
        states = db.session.execute(select(
            Delivery.destination, Delivery.state, Delivery.reason, Delivery.last_error).where(
            Delivery.event_id == conversion.id)).all()
    assert sorted(s[:2] for s in states) == [("hook", "succeeded"), ("meta", "succeeded")], states
    stub = env["stub"]
    meta = [e for r in stub.requests if "/events" in r.path for e in r.json()["data"]]
    sent = [e for e in meta if e["event_id"] == conversion.message_id]
    assert len(sent) == 1, meta
    user = sent[0]["user_data"]
    assert sent[0]["event_name"] == "CompleteRegistration"
    assert user["fbc"].startswith("fb.1.") and user["fbc"].endswith(".FB_E2E")
    phone_hash = hashlib.sha256(E164.lstrip("+").encode()).hexdigest()
    assert user["ph"] in (phone_hash, [phone_hash])
    hooks = [r.json() for r in stub.requests if r.path == "/hook"]
    hook = next(h for h in hooks if h["messageId"] == conversion.message_id)
    assert "G_E2E" in json.dumps(hook["context"]) and "TT_E2E" in json.dumps(hook["context"])
    laptop.close()
    phone_ctx.close()


def test_form_shows_errors_in_words(browser, env):
    ctx = new_context(browser)
    page = ctx.new_page()
    page.goto(f"{env['www']}/landing.html")
    page.fill("#phone", "12345")
    page.click("#phone-form button[type=submit]")
    page.wait_for_selector("#form-error:not([hidden])")
    assert "does not look like a mobile number" in page.inner_text("#form-error")

    # Three codes per phone per 10 minutes: the fourth ask is refused, and said so. (A few
    # more tries are allowed: other test sessions may flush the shared test Redis meanwhile.)
    page.fill("#phone", LIMITED_PHONE)
    page.click("#phone-form button[type=submit]")
    page.wait_for_selector("#code-form:not([hidden])")
    for _ in range(8):
        page.click("#resend")
        page.wait_for_function("!document.querySelector('#resend').disabled")
        if page.is_visible("#form-error"):
            break
    assert "Too many codes asked for this number" in page.inner_text("#form-error")
    ctx.close()


def test_consent_gate_and_ad_cookies(browser, env):
    app = env["app"]
    ctx = new_context(browser)
    # The Meta pixel's cookie on the www host only: t. cannot receive it, so sst.js sends it.
    ctx.add_cookies([{"name": "_fbp", "value": "fb.1.1700000000000.42", "domain": f"www.{DOMAIN}",
                      "path": "/", "secure": True}])
    page = ctx.new_page()
    before = len(env["recorder"].seen)
    page.goto(f"{env['www']}/consent.html")
    page.wait_for_function("window.sst && window.sst.loaded")
    time.sleep(0.5)
    # Before consent: nothing sent, no cookie.
    assert [r for r in env["recorder"].seen[before:] if r["method"] == "POST"] == []
    assert sst_cookie(ctx) is None
    page.click("#agree")
    ev = eventually(lambda: [e for e in events(app, type="page")
                             if e.page_url.endswith("/consent.html")])[0]
    ctx_msg = ev.message["context"]
    assert ctx_msg["consent"]["categoryPreferences"] == {"Analytics": True, "Advertising": True}
    assert ctx_msg["cookies"] == {"_fbp": "fb.1.1700000000000.42"}
    eventually(lambda: sst_cookie(ctx))
    ctx.close()
