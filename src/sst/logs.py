"""Log output: one JSON object per line in production, readable text on a laptop.

`configure_logging(app)` picks the format from `LOG_FORMAT` (env `SST_LOG_FORMAT`):

- ``json``: one JSON object per line: ``time`` (UTC, ISO-8601 with ms), ``level``, ``logger``,
  ``message``, then the fields a caller passed as ``extra={"sst": {...}}``, flattened, and
  ``exc_info`` (the traceback as one string) when there is one;
- ``text``: ``time level logger: message key=value ...``;
- ``off``: leave logging alone (for a deployment that brings its own logging config);
- unset: ``json`` when ``ENV`` is ``production``, else ``text``.

One handler goes on the root logger (so RQ's and werkzeug's lines come out the same way)
and the ``sst`` loggers log from INFO up. Calling it again replaces that handler's format
instead of adding a second one.

`log_rejection` and `log_delivery` write the one structured line per refused ingest request
and per delivery outcome. They take ids and short codes only: never a phone, an email, a
token or a message body.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

ingest_logger = logging.getLogger("sst.ingest")
delivery_logger = logging.getLogger("sst.delivery")

# Attributes every LogRecord has; anything else on a record came from `extra`.
_CORE = ("time", "level", "logger", "message")
_MAX_FIELD = 128  # a code or a name; anything longer is not an id


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (as logging.lastResort does), so a
    replaced stderr (pytest, a daemoniser) is followed rather than kept open."""

    _sst = True

    def __init__(self):
        logging.Handler.__init__(self)

    @property
    def stream(self):
        return sys.stderr


def _time(record) -> str:
    dt = datetime.fromtimestamp(record.created, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _fields(record) -> dict:
    extra = getattr(record, "sst", None)
    return extra if isinstance(extra, dict) else {}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record):
        doc = {"time": _time(record), "level": record.levelname.lower(), "logger": record.name,
               "message": record.getMessage()}
        for key, value in _fields(record).items():
            if key not in _CORE:  # a field never hides the core ones
                doc[key] = value
        if record.exc_info:
            doc["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc_info"] = record.exc_text
        return json.dumps(doc, default=str, separators=(",", ":"))


_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7f)}
_CONTROLS.update({0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t", 0x2028: "\\u2028",
                  0x2029: "\\u2029", 0x85: "\\x85"})


def escape_controls(text: str) -> str:
    """Control characters (and Unicode line separators) written as escapes: one record,
    one line, whatever the logged values hold."""
    return text.translate(_CONTROLS)


class TextFormatter(logging.Formatter):
    """Readable lines for a terminal, the structured fields appended as key=value."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record):  # noqa: N802 (logging's name)
        # L6: a message carries request data (a path, a messageId); a newline in it would
        # start a line of the attacker's making. Tracebacks are added after this, intact.
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record):
        line = super().format(record)
        fields = _fields(record)
        if fields:
            first, _, rest = line.partition("\n")  # fields before any traceback
            extra = " ".join(f"{k}={escape_controls(str(v))}" for k, v in fields.items())
            line = f"{first} {extra}" + (f"\n{rest}" if rest else "")
        return line


def log_format(config) -> str:
    """json | text | off, from LOG_FORMAT or, unset, from ENV."""
    value = str(config.get("LOG_FORMAT") or "").strip().lower()
    if value in ("json", "text", "off"):
        return value
    return "json" if config.get("ENV") == "production" else "text"


def configure_logging(app) -> None:
    """Install the one sst handler on the root logger; idempotent."""
    fmt = log_format(app.config)
    if fmt == "off":
        return
    from flask.logging import default_handler

    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_sst", False)), None)
    if handler is None:
        handler = _StderrHandler()
        root.addHandler(handler)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    sst_logger = logging.getLogger("sst")  # also Flask's app.logger (the app is named "sst")
    sst_logger.removeHandler(default_handler)  # the root handler writes those lines now
    if sst_logger.level == logging.NOTSET:
        sst_logger.setLevel(logging.INFO)


def _short(value):
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)[:_MAX_FIELD]


def log_rejection(source, endpoint, status, error) -> None:
    """One line for a refused ingest request. `error` is the error code, not its text."""
    fields = {"kind": "ingest.rejected", "source": _short(source), "endpoint": _short(endpoint),
              "status": _short(status), "error": _short(error)}
    level = logging.WARNING if isinstance(status, int) and status >= 500 else logging.INFO
    ingest_logger.log(level, "ingest rejected %s on %s: %s (source %s)", status, endpoint, error,
                      source, extra={"sst": fields})


def log_delivery(delivery_id, destination, state, attempt, code, message_id) -> None:
    """One line for a delivery outcome (the platform's event id is the messageId)."""
    fields = {"kind": "delivery.outcome", "delivery_id": _short(delivery_id),
              "destination": _short(destination), "state": _short(state),
              "attempt": _short(attempt), "code": _short(code),
              "message_id": _short(message_id)}
    level = logging.INFO if state in ("succeeded", "pending") else logging.WARNING
    delivery_logger.log(level, "delivery %s to %s: %s after attempt %s (%s)", delivery_id,
                        destination, state, attempt, code, extra={"sst": fields})
