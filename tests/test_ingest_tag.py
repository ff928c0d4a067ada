"""GET /v1/sst.js: served from the package, cacheable, small; the dev-only example route."""

import configparser
import gzip
from importlib import resources
from pathlib import Path

import pytest

from sst import create_app
from sst.ingest.tag import bp, render_example
from support.apps import base_config

ROOT = Path(__file__).resolve().parents[1]
DEV_KEY = "wk_dev_examples_0123456789"


def _with_browser(app):
    if "browser" not in app.blueprints:  # until app.py registers it
        app.register_blueprint(bp)
    return app


@pytest.fixture
def client(app):
    return _with_browser(app).test_client()


def _dev_client(tmp_path, **extra):
    sources = [{"name": "dev", "write_key": DEV_KEY, "origins": ["http://localhost"]}]
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'sst.sqlite'}",
                                 SOURCES=sources, **extra))
    return _with_browser(app).test_client()


def test_script_is_served_cacheable_and_small(client):
    r = client.get("/v1/sst.js")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/javascript; charset=utf-8"
    cache = r.headers["Cache-Control"]
    assert "public" in cache and "max-age=3600" in cache
    assert r.headers["ETag"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert "Set-Cookie" not in r.headers
    assert r.data == resources.files("sst").joinpath("static/sst.js").read_bytes()
    # No framework: a few KB on the wire.
    assert len(r.data) < 8 * 1024
    assert len(gzip.compress(r.data)) < 3 * 1024
    for api in ("track:", "identify:", "page:", "verifyPhone:", "sendBeacon",
                'credentials: "include"', "keepalive: true", "messageId", "categoryPreferences"):
        assert api.encode() in r.data, api


def test_script_revalidates_with_304(client):
    etag = client.get("/v1/sst.js").headers["ETag"]
    r = client.get("/v1/sst.js", headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.data == b""
    assert client.get("/v1/sst.js", headers={"If-None-Match": '"other"'}).status_code == 200


def test_script_is_package_data():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    # tests/test_deploy_install.py checks the built wheel and serves sst.js from it.
    assert "*.js" in cfg["options.package_data"]["sst.static"]
    assert "playwright" in cfg["options.extras_require"]["dev"]


def test_examples_are_not_served_by_default(client):
    assert client.get("/example/").status_code == 404
    assert client.get("/example/landing.html").status_code == 404


def test_examples_in_dev_carry_host_and_key(tmp_path):
    client = _dev_client(tmp_path, SERVE_EXAMPLES=True)
    for path in ("/example/", "/example/landing.html"):
        r = client.get(path)
        assert r.status_code == 200, path
        html = r.get_data(as_text=True)
        assert 'src="http://localhost/v1/sst.js"' in html
        assert f'data-write-key="{DEV_KEY}"' in html and "{{" not in html
        assert 'id="phone-form"' in html and 'id="code-form"' in html
    thanks = client.get("/example/thanks.html").get_data(as_text=True)
    assert 'sst.track("Signed Up"' in thanks and DEV_KEY in thanks
    assert client.get("/example/style.css").status_code == 200
    assert client.get("/example/missing.html").status_code == 404
    assert client.get("/example/../setup.cfg").status_code == 404
    assert client.get("/example/%2e%2e/setup.cfg").status_code == 404


def test_examples_need_a_source_for_the_origin(tmp_path):
    client = _dev_client(tmp_path, SERVE_EXAMPLES=True)
    r = client.get("/example/", base_url="http://127.0.0.1:9999")
    assert r.status_code == 404
    assert b"127.0.0.1:9999" in r.data


def test_render_example_fills_placeholders():
    html = render_example(ROOT / "examples" / "landing.html", "https://t.example.com/",
                          "wk_123456789").decode()
    assert 'src="https://t.example.com/v1/sst.js"' in html
    assert 'data-api-host="https://t.example.com"' in html
    assert "{{" not in html
