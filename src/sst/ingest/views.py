"""Blueprint "ingest": Segment-compatible tracking API and the pixel.

Views stay thin: read the request, hand messages to messages.prepare(), store them with
store.store_events(), answer. Every refused request is kept in rejected_payloads.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, request

from sst.cors import add_cors_headers
from sst.errors import ApiError, SchemaBehindError, StorageUnavailableError
from sst.extensions import state as current_state
from sst.ingest import counters, store
from sst.ingest.pixel import GIF, GIF_HEADERS, PixelError, decode_data, decode_dotted
from sst.ingest.prepare import MAX_DEPTH, Rejection, prepare
from sst.ingest.request import authenticate, choose_visitor, read_body, request_info, set_cookie
from sst.ingest.schema import MESSAGE_TYPES
from sst.jsonutil import MalformedJSON, dumps, loads, shallow
from sst.logs import log_rejection

logger = logging.getLogger(__name__)
bp = Blueprint("ingest", __name__)


@bp.after_request
def _after(resp):
    # One hook rather than two: Flask wraps each hook call (ensure_sync), a few µs apiece.
    return counters.record_response(add_cors_headers(resp))


SUCCESS = b'{"success":true}'
SINGLE = {t: t for t in MESSAGE_TYPES}
BATCH = {"batch", "import"}


def _json_response(body: bytes | dict, status=200) -> Response:
    data = body if isinstance(body, bytes) else dumps(body).encode()
    return Response(data, status=status, mimetype="application/json")


def _reject(status, code, message, *, source=None, details=None, body=None):
    state = current_state()
    store.record_rejection(
        state.engine, keep=state.rejected_keep, source=source, endpoint=request.path[:64],
        status=status, error=code, message=message[:1000], details=details, body=body,
        ip=request.remote_addr, user_agent=request.headers.get("User-Agent"),
        origin=request.headers.get("Origin"))
    log_rejection(source, request.path[:64], status, code)


@bp.route("/v1/<kind>", methods=["POST"])
def collect(kind):
    if kind not in SINGLE and kind not in BATCH:
        raise ApiError(404, "not_found", f"no endpoint /v1/{kind[:40]}")
    state = current_state()
    is_batch = kind in BATCH
    body = b""
    source = None
    try:
        if is_batch:
            body = read_body(state.max_batch_bytes)
        else:
            body = read_body(state.max_message_bytes, "message_too_large")
        try:
            payload = loads(body)
        except MalformedJSON as exc:
            raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "malformed_json", "the body must be a JSON object")
        source, auth = authenticate(state, payload.get("writeKey"))
        state.check_rate(source)

        if is_batch:
            messages = payload.get("batch")
            if not isinstance(messages, list) or not messages:
                raise ApiError(400, "invalid_message", "a batch needs a non-empty 'batch' list",
                               fields={"batch": "required, a non-empty list"})
            messages = [_merge_batch_defaults(m, payload) for m in messages]
        else:
            payload["type"] = SINGLE[kind]
            messages = [payload]
        return _store(state, source, auth, messages, is_batch, body, payload)
    except ApiError as exc:
        # Floods (429) and outages (503) are counted in logs, not stored row by row.
        if exc.status not in (429, 503):
            name = source.name if source else getattr(exc, "source", None)
            _reject(exc.status, exc.code, exc.message, source=name,
                    details=exc.details or None, body=body)
        else:
            log_rejection(source.name if source else None, request.path[:64], exc.status,
                          exc.code)
        # Segment's SDKs read the error's `code` (analytics-python: payload["code"]; older
        # releases and their forks retry as if the network had failed when it is missing).
        exc.details.setdefault("code", exc.code)
        raise


def _merge_batch_defaults(message, batch: dict):
    """A batch's own context and integrations apply to each message (its own keys win)."""
    if not isinstance(message, dict):
        return message
    for key in ("context", "integrations"):
        shared = batch.get(key)
        if isinstance(shared, dict) and shared:
            own = message.get(key)
            message[key] = {**shared, **own} if isinstance(own, dict) else dict(shared)
    return message


def _batch_sent_at(payload):
    from sst.clock import parse_time

    try:
        return parse_time(payload["sentAt"]) if payload.get("sentAt") else None
    except (ValueError, TypeError):
        return None


def _store(state, source, auth, messages, is_batch, body, payload):
    info = request_info(source, auth, request.path, _batch_sent_at(payload) if is_batch else None)
    info.shallow = shallow(body, MAX_DEPTH)
    browser = info.origin is not None
    first = next((m.get("anonymousId") for m in messages if isinstance(m, dict)), None)
    info.visitor_id = choose_visitor(state, info, browser, first)

    prepared, rejected = [], []
    for i, raw in enumerate(messages):
        result = prepare(raw, info, i if is_batch else None,
                         state.max_message_bytes if is_batch else None)
        if isinstance(result, Rejection):
            message_id = raw.get("messageId") if isinstance(raw, dict) else None
            rejected.append({"index": i, "messageId": message_id if isinstance(
                message_id, str) else None, "error": result.error, "message": result.message,
                **({"fields": result.fields} if result.fields else {})})
        else:
            prepared.append(result)

    if not prepared:
        if not is_batch:
            r = rejected[0]
            raise ApiError(413 if r["error"] == "message_too_large" else 400, r["error"],
                           r["message"], **({"fields": r["fields"]} if "fields" in r else {}))
        counters.count_messages(source.name, 0, len(rejected))
        raise ApiError(400, "invalid_batch", "no message in the batch is valid",
                       rejected=rejected)
    try:
        state.store(prepared)
        counters.count_messages(source.name, len(prepared), len(rejected))
    except StorageUnavailableError as exc:
        logger.error("storage unavailable, answering 503: %s", exc)
        err = ApiError(503, "storage_unavailable",
                       str(exc) if isinstance(exc, SchemaBehindError)
                       else "events cannot be stored right now; retry later")
        err.headers["Retry-After"] = str(state.retry_after)
        raise err from None

    if rejected:
        for r in rejected:
            _reject(413 if r["error"] == "message_too_large" else 400, r["error"], r["message"],
                    source=source.name, details={k: v for k, v in r.items() if k != "message"},
                    body=dumps(messages[r["index"]]))
        resp = _json_response({"success": True, "rejected": rejected})
    else:
        resp = _json_response(SUCCESS)
    if info.visitor_id is not None and (browser or info.cookie_state == "valid"):
        set_cookie(state, resp, info.visitor_id)
    return resp


@bp.route("/v1/pixel/<kind>", methods=["GET"])
def pixel(kind):
    """Always the GIF: an <img> cannot show an error, so refusals are only recorded."""
    resp = Response(GIF, status=200, headers=GIF_HEADERS)
    state = current_state()
    source = None
    try:
        if kind not in SINGLE:
            raise ApiError(404, "not_found", f"no pixel type {kind[:20]!r}")
        if "data" in request.args:
            message = decode_data(request.args["data"], state.pixel_max_data)
        else:
            message = decode_dotted(request.args)
        source, auth = authenticate(state, request.args.get("writeKey")
                                     or message.get("writeKey"), allow_query=False)
        state.check_rate(source)
        message["type"] = kind
        info = request_info(source, auth, request.path)
        info.extra_touch_url = request.url
        info.visitor_id = choose_visitor(state, info, True, message.get("anonymousId"))
        result = prepare(message, info, None, state.max_message_bytes)
        if isinstance(result, Rejection):
            raise ApiError(result.status, result.error, result.message)
        state.store([result])
        counters.count_messages(source.name, 1, 0)
        set_cookie(state, resp, info.visitor_id)
    except PixelError as exc:
        _reject(400, exc.code, exc.message, body=request.query_string)
    except ApiError as exc:
        if exc.status != 429:
            name = source.name if source else getattr(exc, "source", None)
            _reject(exc.status, exc.code, exc.message, source=name, body=request.query_string)
    except StorageUnavailableError as exc:
        logger.error("storage unavailable for a pixel hit: %s", exc)
    except Exception:  # an <img> cannot show an error: the contract is the GIF, always
        logger.exception("pixel hit failed on %s", request.path[:64])
    return resp
