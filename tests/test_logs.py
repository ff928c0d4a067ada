"""Log output: JSON lines with the structured fields, ids only; text on a laptop."""

from __future__ import annotations

import json
import logging

import pytest
from flask import Flask
from flask.logging import default_handler

from sst.logs import configure_logging, log_delivery, log_rejection

CORE = {"time", "level", "logger", "message"}


@pytest.fixture(autouse=True)
def restore_logging():
    root, sst_logger = logging.getLogger(), logging.getLogger("sst")
    saved = (root.handlers[:], sst_logger.handlers[:], sst_logger.level)
    yield
    root.handlers[:], sst_logger.handlers[:] = saved[0], saved[1]
    sst_logger.setLevel(saved[2])


def configured(**config):
    app = Flask("test_logs")
    app.config.update(config)
    configure_logging(app)
    return app


def json_lines(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]


def test_rejection_is_one_json_line_with_its_fields(capsys):
    configured(LOG_FORMAT="json")
    log_rejection("web", "/v1/track", 400, "malformed_json")

    [doc] = json_lines(capsys)
    assert set(doc) == CORE | {"kind", "source", "endpoint", "status", "error"}
    assert doc["time"].endswith("Z") and doc["level"] == "info" and doc["logger"] == "sst.ingest"
    assert {k: doc[k] for k in ("kind", "source", "endpoint", "status", "error")} == {
        "kind": "ingest.rejected", "source": "web", "endpoint": "/v1/track", "status": 400,
        "error": "malformed_json"}


def test_delivery_outcome_is_one_json_line_with_ids_only(capsys):
    configured(LOG_FORMAT="json")
    log_delivery(42, "meta", "failed", 3, "190", "msg-1")
    log_delivery(43, "meta", "succeeded", 1, None, "msg-2")

    failed, ok = json_lines(capsys)
    assert set(failed) == CORE | {"kind", "delivery_id", "destination", "state", "attempt",
                                  "code", "message_id"}
    assert (failed["level"], failed["logger"], failed["kind"]) == ("warning", "sst.delivery",
                                                                  "delivery.outcome")
    assert (failed["delivery_id"], failed["destination"], failed["state"], failed["attempt"],
            failed["code"], failed["message_id"]) == (42, "meta", "failed", 3, "190", "msg-1")
    assert ok["level"] == "info" and ok["code"] is None


def test_helpers_cut_anything_longer_than_an_id(capsys):
    configured(LOG_FORMAT="json")
    log_rejection("web", "/v1/track", 400, "x" * 5000)
    [doc] = json_lines(capsys)
    assert len(doc["error"]) == 128


def test_storage_outage_rejection_is_a_warning(capsys):
    configured(LOG_FORMAT="json")
    log_rejection("web", "/v1/batch", 503, "storage_unavailable")
    assert json_lines(capsys)[0]["level"] == "warning"


def test_extra_fields_are_flattened_and_never_hide_the_core_ones(capsys):
    configured(LOG_FORMAT="json")
    logging.getLogger("sst.somewhere").info("hello %s", "there", extra={"sst": {
        "event_id": 7, "message": "not this", "hashed_email": "ab" * 32}})
    [doc] = json_lines(capsys)
    assert doc["message"] == "hello there"
    assert doc["event_id"] == 7 and doc["hashed_email"] == "ab" * 32


def test_a_traceback_stays_on_one_line(capsys):
    configured(LOG_FORMAT="json")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("sst.x").exception("it broke")
    [doc] = json_lines(capsys)
    assert doc["level"] == "error" and "ValueError: boom" in doc["exc_info"]


def test_production_defaults_to_json(capsys):
    configured(ENV="production")
    log_rejection("web", "/v1/track", 401, "unknown_write_key")
    assert json_lines(capsys)[0]["error"] == "unknown_write_key"


def test_development_defaults_to_readable_text(capsys):
    configured(ENV="development")
    log_rejection("web", "/v1/track", 401, "unknown_write_key")
    line = capsys.readouterr().err.strip()
    assert not line.startswith("{")
    assert "INFO sst.ingest: ingest rejected 401 on /v1/track: unknown_write_key" in line
    assert "kind=ingest.rejected" in line and "status=401" in line


def test_configure_is_idempotent_and_takes_the_latest_format(capsys):
    configured(LOG_FORMAT="text")
    configured(LOG_FORMAT="json")
    configured(LOG_FORMAT="json")
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_sst", False)]
    assert len(ours) == 1
    log_delivery(1, "meta", "succeeded", 1, None, "m")
    assert len(json_lines(capsys)) == 1  # one line, not one per configure call


def test_off_leaves_logging_alone():
    before = logging.getLogger().handlers[:]
    configured(LOG_FORMAT="off", ENV="production")
    assert logging.getLogger().handlers == before


def test_flask_default_handler_does_not_print_twice(capsys):
    logging.getLogger("sst").addHandler(default_handler)  # as app.logger does when first read
    configured(LOG_FORMAT="json")
    assert default_handler not in logging.getLogger("sst").handlers
    logging.getLogger("sst").warning("once")
    assert [d["message"] for d in json_lines(capsys)] == ["once"]


def test_env_variable_selects_json(monkeypatch, capsys, tmp_path):
    from sst import create_app

    monkeypatch.setenv("SST_LOG_FORMAT", "json")
    app = create_app({"TESTING": True, "DATABASE_URL": f"sqlite:///{tmp_path}/x.sqlite"})
    configure_logging(app)
    log_rejection(None, "/v1/pixel/page", 400, "malformed_data")
    assert json_lines(capsys)[-1]["source"] is None


def test_text_logs_cannot_be_forged_through_the_pixel_path(app, capsys):
    """L6: a newline in the path put a fake ERROR line into the text log."""
    from support.apps import WRITE_KEY

    configure_logging(app)  # text: the development default
    forged = "2026-12-06 00:00:00,000 ERROR sst.admin: FORGED LINE"
    r = app.test_client().get(f"/v1/pixel/x%0a{forged.replace(' ', '%20')}"
                              f"?writeKey={WRITE_KEY}")
    assert r.status_code == 200
    log_rejection("web", "/v1/pixel/x\r\n" + forged, 404, "not_found")
    err = capsys.readouterr().err
    assert "FORGED LINE" in err  # logged, but escaped inside its own line
    assert not any(line.startswith(forged[:23]) for line in err.splitlines())
    assert "\\n" in err
