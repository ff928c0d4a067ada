"""`sst init` (a starter config that loads) and `sst dev`'s inbox destination, which shows
what each destination received."""

from __future__ import annotations

import base64
import json
import socket
import threading
import tomllib

import pytest
import requests
from click.testing import CliRunner
from werkzeug.serving import make_server

from sst import connectors, create_app
from sst.cli import dev_app, main
from sst.delivery.worker import run_inline
from sst.errors import ConfigError
from support.apps import base_config


def test_init_writes_a_starter_config_that_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "sst.toml"
    assert f"wrote {path}" in result.output
    for step in ("export SST_CONFIG=", "sst db upgrade", "sst destination test hook",
                 "sst worker"):
        assert step in result.output
    assert path.stat().st_mode & 0o777 == 0o600
    raw = tomllib.loads(path.read_text())
    assert [s["name"] for s in raw["source"]] == ["web", "server"]
    assert raw["source"][0]["write_key"] != raw["source"][1]["write_key"]
    assert raw["destination"] == [{"name": "hook", "connector": "webhook",
                                   "url": "https://hooks.example.com/sst",
                                   "secret": raw["destination"][0]["secret"],
                                   "events": {"*": "*"}}]
    app = create_app({"CONFIG": str(path), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}"})
    state = app.extensions["sst"]
    assert sorted(s.name for s in state.sources.values()) == ["server", "web"]
    assert list(state.destinations) == ["hook"]


def test_init_comments_out_every_ad_platform_with_its_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    CliRunner().invoke(main, ["init"])
    text = (tmp_path / "sst.toml").read_text()
    for name, cls in connectors.registry().items():
        if name == "webhook":
            continue
        assert f'# connector = "{name}"' in text
        for key, fld in cls.settings_schema().fields.items():
            if fld.required and key not in ("name", "connector"):
                assert f"# {key} = " in text, (name, key)


def test_each_commented_platform_loads_once_uncommented(tmp_path, monkeypatch):
    # Uncommenting a block and filling its values gives a valid destination.
    monkeypatch.chdir(tmp_path)
    CliRunner().invoke(main, ["init"])
    text = (tmp_path / "sst.toml").read_text()
    blocks = text.split("\n# [[destination]]\n")[1:]
    assert blocks
    for block in blocks:
        lines = [line.removeprefix("# ").split("      #")[0]
                 for line in ("# [[destination]]\n" + block).strip().splitlines()]
        body = "\n".join(lines).replace('"..."', '"1234567890"')
        for ref in {w for w in body.split('"') if w.startswith("env:")}:
            monkeypatch.setenv(ref[4:], "secret-value-123")
        one = tmp_path / "one.toml"
        one.write_text(body + "\n")
        try:
            create_app({"CONFIG": str(one), "DATABASE_URL": f"sqlite:///{tmp_path / 'y.db'}"})
        except ConfigError as exc:
            pytest.fail(f"{lines[1]}: {exc}")


def test_init_does_not_overwrite_without_force(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sst.toml").write_text("# mine\n")
    result = CliRunner().invoke(main, ["init"])
    assert result.exit_code == 2
    assert "exists; pass --force" in result.stderr
    assert (tmp_path / "sst.toml").read_text() == "# mine\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sst_dev_delivers_to_the_inbox_and_shows_meta_s_request(tmp_path):
    port = _free_port()
    app, config_path = dev_app(tmp_path / ".sst-dev", "127.0.0.1", port)
    server = make_server("127.0.0.1", port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{port}"
        key = next(iter(app.extensions["sst"].sources))
        auth = "Basic " + base64.b64encode(f"{key}:".encode()).decode()
        body = {"event": "Signed Up", "userId": "u1", "messageId": "dev-m-1",
                "context": {"userAgent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/133.0",
                            "page": {"url": "http://localhost/?fbclid=IwAR-dev"}}}
        r = requests.post(f"{url}/v1/track", json=body, headers={"Authorization": auth},
                          timeout=10)
        assert r.status_code == 200, r.text
        with app.app_context():
            assert run_inline(app.extensions["sst"]) == 2
        got = requests.get(f"{url}/dev/inbox?format=json", timeout=10).json()["received"]
        by_dest = {item["destination"]: item for item in got}
        assert set(by_dest) == {"webhook", "meta"}
        meta = by_dest["meta"]
        assert meta["path"].endswith("/1234567890/events")
        assert meta["query"] == {"access_token": "***"}
        event = meta["body"]["data"][0]
        assert event["event_name"] == "CompleteRegistration"
        assert event["event_id"] == "dev-m-1"
        assert event["user_data"]["client_user_agent"].startswith("Mozilla/5.0")
        hook = by_dest["webhook"]
        assert hook["body"]["event"] == "Signed Up"
        assert hook["headers"]["X-SST-Signature"].startswith("sha256=")
        page = requests.get(f"{url}/dev/inbox", timeout=10)
        assert page.status_code == 200
        assert "CompleteRegistration" in page.text and "dev-m-1" in page.text
        with app.app_context():
            from sqlalchemy import select

            from sst.extensions import db
            from sst.models import Delivery

            states = db.session.execute(select(Delivery.destination, Delivery.state)).all()
        assert sorted(states) == [("meta", "succeeded"), ("webhook", "succeeded")]
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert json.dumps(tomllib.loads(config_path.read_text()))  # the file it wrote is TOML


def test_the_inbox_is_off_outside_sst_dev(tmp_path):
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'a.db'}"))
    client = app.test_client()
    assert client.get("/dev/inbox").status_code == 404
    assert client.post("/dev/inbox/meta/v1/events", json={}).status_code == 404


def test_production_refuses_the_inbox():
    with pytest.raises(ConfigError, match="DEV_INBOX"):
        create_app(base_config(ENV="production", DEV_INBOX=True,
                               SECRET_KEY="a-long-production-secret-0123456789"))


@pytest.mark.parametrize("args", [["status"], ["tracks"], ["destination", "list"]])
def test_no_destination_is_said_not_left_as_an_empty_table(tmp_path, args):
    """deploy/'s example config ships its destinations commented out: the empty tables say
    why, on stderr (JSON output stays clean)."""
    config = tmp_path / "sst.toml"
    config.write_text('[[source]]\nname = "web"\nwrite_key = "wk_0123456789"\n')
    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
                                 CONFIG=str(config), DESTINATIONS=[]))
    from sst import migrate

    with app.app_context():
        migrate.upgrade()
    result = app.test_cli_runner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (f"sst: no destination is configured in {config}: events are stored and sent "
            "nowhere") in result.stderr


def test_admin_status_says_no_destination_is_configured(tmp_path):
    from sst import migrate

    app = create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite'}",
                                 DESTINATIONS=[], ADMIN={"token": "admin-token-0123456789"}))
    with app.app_context():
        migrate.upgrade()
    r = app.test_client().get("/admin/", headers={"Authorization":
                                                  "Bearer admin-token-0123456789"})
    assert r.status_code == 200
    assert b"no destination is configured" in r.data
