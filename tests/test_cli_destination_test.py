"""`sst destination test NAME [--event-file F] [--send]` against a local stub of every
connector in the registry: the payload shown with secrets masked, and --send in the
platform's test mode with the platform's verdict."""

from __future__ import annotations

import importlib
import json
from urllib.parse import parse_qs, urlsplit

import pytest
from click.testing import CliRunner

from sst import connectors, create_app
from sst.cli import main
from sst.delivery.trial import TEST_MODES
from support.apps import base_config
from support.connectors import Platform
from support.stub_platform import Reply, StubPlatform

TOKEN_REPLY = Reply(200, {"access_token": "ya29.stub-token", "expires_in": 3600,
                          "token_type": "Bearer"})
# What each platform answers in its test mode, where that differs from its usual success.
TEST_ANSWERS = {"ga4": (200, {"validationMessages": []})}
# Platforms whose conversions API documents no test mode (docs/connectors.md): --send refuses
# rather than record a real conversion.
NO_TEST_MODE = {"linkedin", "microsoft_ads", "x_ads"}
WITH_TEST_MODE = sorted(set(connectors.registry()) - NO_TEST_MODE)


def platform_of(name: str) -> Platform:
    """The connector's Platform from its own test file (every connector has one: see
    tests/test_connectors.py), so a new connector is covered here too."""
    module = importlib.import_module(f"test_connector_{name}")
    found = [v for v in vars(module).values() if isinstance(v, Platform) and v.name == name]
    assert found, f"tests/test_connector_{name}.py defines no Platform for {name}"
    return found[0]


def _secrets(name: str, settings: dict) -> list[str]:
    from sst.connectors.base import secret_fields

    return [str(settings[k]) for k in secret_fields(connectors.get(name).settings_schema)
            if settings.get(k)]


def _app(tmp_path, name, platform, stub_url):
    settings = dict(platform.settings)
    if name == "webhook":
        settings["url"] = f"{stub_url}/hook"
    else:
        settings["base_url"] = stub_url
    if platform.token_url:
        settings["token_url"] = f"{stub_url}/token"
    dest = {"name": f"my-{name}", "connector": name, **settings,
            "events": {"Order Completed": platform.platform_event, "$page": "PageView"}}
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
                                 DESTINATIONS=[dest]))
    return app, settings


def _check_test_mode(name: str, stub: StubPlatform) -> None:
    """The request carried the platform's test-mode marker."""
    sent = [r for r in stub.requests if not r.path.startswith("/token")]
    assert len(sent) == 1, [r.path for r in stub.requests]
    req = sent[0]
    query = parse_qs(urlsplit(req.path).query)
    body = json.loads(req.body) if req.body else {}
    checks = {
        "meta": lambda: body["test_event_code"] == "TEST123",
        "tiktok": lambda: body["test_event_code"] == "TEST123",
        "ga4": lambda: urlsplit(req.path).path == "/debug/mp/collect",
        "google_ads": lambda: body["validateOnly"] is True,
        "google_ads_legacy": lambda: body["validateOnly"] is True,
        "snapchat": lambda: urlsplit(req.path).path.endswith("/events/validate"),
        "reddit": lambda: body["test_mode"] is True,
        "pinterest": lambda: query.get("test") == ["true"],
        "webhook": lambda: req.headers.get("X-SST-Test") == "true",
    }
    if name in checks:
        assert checks[name](), (name, req.path, body)


@pytest.mark.parametrize("name", sorted(connectors.registry()))
def test_the_payload_is_shown_with_secrets_masked_and_nothing_sent(tmp_path, name):
    platform = platform_of(name)
    with StubPlatform() as stub:
        app, settings = _app(tmp_path, name, platform, stub.url)
        result = app.test_cli_runner().invoke(main, ["destination", "test", f"my-{name}"])
        assert result.exit_code == 0, result.output
        assert f"my-{name} ({name}) <- sst-test-" in result.output
        assert "POST http://127.0.0.1" in result.output
        assert "not sent (add --send" in result.output
        for secret in _secrets(name, settings):
            assert secret not in result.output
        assert stub.requests == []


@pytest.mark.parametrize("name", WITH_TEST_MODE)
def test_send_uses_the_platform_s_test_mode_and_prints_its_verdict(tmp_path, name):
    platform = platform_of(name)
    status, body = TEST_ANSWERS.get(name, platform.success)
    with StubPlatform(Reply(status, body if body is not None else b"")) as stub:
        if platform.token_url:
            stub.replies.append(TOKEN_REPLY)
        app, settings = _app(tmp_path, name, platform, stub.url)
        result = app.test_cli_runner().invoke(
            main, ["destination", "test", f"my-{name}", "--send", "--test-code", "TEST123"])
        assert result.exit_code == 0, result.output
        assert result.output.strip().splitlines()[-1].startswith("verdict: accepted")
        assert f"answer: {status}" in result.output
        _check_test_mode(name, stub)
        for secret in _secrets(name, settings):
            assert secret not in result.output


def test_every_connector_but_those_without_one_has_a_test_mode():
    for name, cls in connectors.registry().items():
        has = bool(getattr(cls, "test_mode", None) or name in TEST_MODES)
        assert has is (name not in NO_TEST_MODE), name


@pytest.mark.parametrize("name", sorted(NO_TEST_MODE))
def test_send_without_a_test_mode_refuses_and_sends_nothing(tmp_path, name):
    with StubPlatform() as stub:
        app, _ = _app(tmp_path, name, platform_of(name), stub.url)
        result = app.test_cli_runner().invoke(main, ["destination", "test", f"my-{name}",
                                                     "--send"])
        assert result.exit_code != 0
        assert f"{name} has no test mode: --send would record a real event" in result.output
        assert stub.requests == []


@pytest.mark.parametrize("name", ["meta", "ga4"])
def test_a_refusal_is_printed_and_exits_1(tmp_path, name):
    platform = platform_of(name)
    refusal = {"meta": (400, {"error": {"message": "Invalid parameter", "code": 100,
                                        "error_subcode": 2804019, "fbtrace_id": "x"}}),
               "ga4": (200, {"validationMessages": [{"fieldPath": "events",
                                                     "description": "bad event name",
                                                     "validationCode": "NAME_INVALID"}]})}
    status, body = refusal[name]
    with StubPlatform(Reply(status, body)) as stub:
        app, _ = _app(tmp_path, name, platform, stub.url)
        result = app.test_cli_runner().invoke(
            main, ["destination", "test", f"my-{name}", "--send", "--test-code", "T1"])
    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1].startswith("verdict: refused (")


def test_meta_send_without_a_test_code_says_where_to_get_one(tmp_path):
    with StubPlatform() as stub:
        app, _ = _app(tmp_path, "meta", platform_of("meta"), stub.url)
        result = app.test_cli_runner().invoke(main, ["destination", "test", "my-meta",
                                                     "--send"])
        assert result.exit_code == 2
        assert "needs a test event code" in result.output and "--test-code" in result.output
        assert stub.requests == []


def test_an_event_file_is_used_as_given(tmp_path):
    event = {"type": "track", "event": "Order Completed", "messageId": "file-m-1",
             "userId": "u-9", "properties": {"order_id": "o-77", "revenue": 10,
                                             "currency": "EUR"},
             "context": {"userAgent": "Mozilla/5.0 (X11) Firefox/133.0", "ip": "198.51.100.4"}}
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event))
    with StubPlatform() as stub:
        app, _ = _app(tmp_path, "meta", platform_of("meta"), stub.url)
        result = app.test_cli_runner().invoke(
            main, ["destination", "test", "my-meta", "--event-file", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["message_id"] == "file-m-1" and doc["platform_event"] == "Purchase"
    sent = json.loads(doc["requests"][0]["body"])["data"][0]
    assert sent["event_id"] == "file-m-1"
    assert sent["user_data"]["client_ip_address"] == "198.51.100.4"


def test_an_unmapped_event_or_unknown_destination_is_a_setup_error(tmp_path):
    path = tmp_path / "event.json"
    path.write_text(json.dumps({"type": "track", "event": "Nobody Maps This"}))
    with StubPlatform() as stub:
        app, _ = _app(tmp_path, "meta", platform_of("meta"), stub.url)
        runner = app.test_cli_runner()
        result = runner.invoke(main, ["destination", "test", "my-meta", "--event-file",
                                      str(path)])
        assert result.exit_code == 2
        assert "does not map 'Nobody Maps This'" in result.output
        result = runner.invoke(main, ["destination", "test", "nope"])
        assert result.exit_code == 2
        assert "unknown destination 'nope'; configured: my-meta" in result.output


def test_it_needs_no_database_schema(tmp_path, monkeypatch):
    # Through the real entry point: only the config is read, the database is never opened.
    config = tmp_path / "sst.toml"
    config.write_text('[[source]]\nname = "s"\nwrite_key = "wk_0123456789"\n\n'
                      '[[destination]]\nname = "hook"\nconnector = "webhook"\n'
                      'url = "https://hooks.example.com/x"\nsecret = "s3cr3t-value"\n'
                      '[destination.events]\n"*" = "*"\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["destination", "test", "hook"], env={
        "SST_CONFIG": str(config),
        "SST_DATABASE_URL": f"sqlite:///{tmp_path / 'never.sqlite'}"})
    assert result.exit_code == 0, result.output
    assert "s3cr3t-value" not in result.output
    assert "X-SST-Signature: sha256=" in result.output
