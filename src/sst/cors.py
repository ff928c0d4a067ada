"""CORS with credentials for the browser origins that sources allow.

Only listed origins are echoed (never '*', never 'null'); whether a key may send from an
origin is decided in the view (403), since CORS alone does not stop the request.
"""

from flask import g, request

from sst.config import normalize_origin
from sst.extensions import state as current_state

PREFLIGHT_MAX_AGE = "7200"  # Chromium's cap


def add_cors_headers(resp):
    origin = request.environ.get("HTTP_ORIGIN")
    resp.headers.add("Vary", "Origin")
    if not origin:
        return resp
    # A view that knows its source (the SDK settings documents) narrows this to its origins.
    allowed = g.get("cors_origins")
    if normalize_origin(origin) not in (current_state().all_origins if allowed is None
                                        else allowed):
        return resp
    resp.headers["Access-Control-Allow-Origin"] = origin
    resp.headers["Access-Control-Allow-Credentials"] = "true"
    resp.headers["Access-Control-Expose-Headers"] = "Retry-After"  # sst.js shows the wait
    if request.method == "OPTIONS":
        resp.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        resp.headers["Access-Control-Allow-Headers"] = (
            request.headers.get("Access-Control-Request-Headers") or "Content-Type, Authorization")
        resp.headers["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    return resp
