"""Blueprint "inbox": `sst dev`'s local destination, which shows each delivery.

The dev config points its destinations here (a webhook at /dev/inbox/webhook, Meta's
base_url at /dev/inbox/meta): the embedded worker sends them the exact requests the platforms
would get, this blueprint keeps the last ones in memory and answers as the platform does on
success, and /dev/inbox lists them. So the quickstart ends with the event at Meta's door.

Off (404) unless the app has DEV_INBOX (set by `sst dev`; SST_ENV=production refuses it).
"""

from __future__ import annotations

import json
import threading
from collections import deque

from flask import Blueprint, abort, current_app, jsonify, render_template, request

from sst.clock import iso, utcnow

bp = Blueprint("inbox", __name__, url_prefix="/dev/inbox", template_folder="templates")

KEEP = 200  # requests kept in memory, newest first
SHOWN_HEADERS = ("Content-Type", "User-Agent", "X-SST-Signature", "X-SST-Timestamp",
                 "X-SST-Signature-V2", "X-SST-Test")
_lock = threading.Lock()


def _received() -> deque:
    return current_app.extensions.setdefault("sst_inbox", deque(maxlen=KEEP))


def _on():
    if not current_app.config.get("DEV_INBOX"):
        abort(404)


@bp.post("/<name>", defaults={"rest": ""})
@bp.post("/<name>/<path:rest>")
def receive(name: str, rest: str):
    """Keep the request; answer what the platform answers to a good one."""
    _on()
    raw = request.get_data(as_text=True)
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = raw
    query = {k: ("***" if "token" in k.lower() or "secret" in k.lower() else v)
             for k, v in request.args.items()}
    item = {"destination": name, "at": iso(utcnow()), "method": request.method,
            "path": "/" + rest, "query": query,
            "headers": {h: request.headers[h] for h in SHOWN_HEADERS if h in request.headers},
            "body": body}
    with _lock:
        _received().appendleft(item)
    if isinstance(body, dict) and isinstance(body.get("data"), list):  # Meta's answer
        return jsonify(events_received=len(body["data"]), messages=[],
                       fbtrace_id="sst-dev-inbox")
    return jsonify(ok=True)


@bp.get("")
def page():
    """What each destination received, newest first."""
    _on()
    with _lock:
        items = list(_received())
    if request.args.get("format") == "json":
        return jsonify(received=items)
    return render_template("inbox/inbox.html", items=items,
                           pretty=lambda v: json.dumps(v, indent=2, ensure_ascii=False))
