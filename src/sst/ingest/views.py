"""Blueprint "ingest": Segment-compatible tracking API and the pixel.

Views stay thin: read the request, hand messages to messages.prepare(), store them with
store.store_events(), answer. Every refused request is kept in rejected_payloads.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, g, request

from sst.cors import add_cors_headers
from sst.errors import ApiError, SchemaBehindError, StorageRefusedError, StorageUnavailableError
from sst.extensions import state as current_state
from sst.identity.network import client_key
from sst.ingest import counters, sdk_settings, store
from sst.ingest.pixel import GIF, GIF_HEADERS, PixelError, b64_data, decode_data, decode_dotted
from sst.ingest.prepare import MAX_DEPTH, Rejection, prepare
from sst.ingest.request import (
    authenticate,
    basic_auth_key,
    choose_visitor,
    read_body,
    request_info,
    set_cookie,
)
from sst.ingest.schema import MESSAGE_TYPES
from sst.jsonutil import MalformedJSON, dumps, dumps_text, loads, parse, shallow
from sst.logs import log_rejection

logger = logging.getLogger(__name__)
bp = Blueprint("ingest", __name__)


@bp.after_request
def _after(resp):
    # One hook rather than two: Flask wraps each hook call (ensure_sync), a few µs apiece.
    return counters.record_response(add_cors_headers(resp))


SUCCESS = b'{"success":true}'
SINGLE = {t: t for t in MESSAGE_TYPES}
# analytics.js / @segment/analytics-next post to the first letter of the call type.
SINGLE.update({"t": "track", "p": "page", "i": "identify", "s": "screen", "g": "group",
               "a": "alias"})
BATCH = {"batch", "import", "b"}  # "b": analytics-next's batching mode
METRICS = "m"  # analytics-next's own telemetry: answered, not kept


def _json_response(body: bytes | dict, status=200) -> Response:
    data = body if isinstance(body, bytes) else dumps(body).encode()
    return Response(data, status=status, mimetype="application/json")


UNAUTHENTICATED_BODY = 1024  # bytes of a body kept when the write key is missing or unknown


def _reject(status, code, message, *, source=None, details=None, body=None):
    state = current_state()
    ip = request.remote_addr
    # L2: anyone can be refused, so a flood of refusals must not fill rejected_payloads
    # (its cap is shared) with 32 KiB rows: bodies of unauthenticated requests are cut to
    # 1 KiB, and each address gets a bounded number of rows.
    if status == 401 and body:
        body = body[:UNAUTHENTICATED_BODY]
    limit = current_app.config.get("REJECTED_PER_IP")  # rows per client address
    if limit and state.throttle.hit(limit, "rejected-ip", client_key(ip)) is not None:
        log_rejection(source, request.path[:64], status, code)
        return
    # L1: a refused browser body may name nobody but the cookie; keep its id so that
    # `sst forget` finds the row.
    visitor = _cookie_visitor(state)
    if visitor is not None:
        details = {**(details or {}), "cookieAnonymousId": visitor}
    store.record_rejection(
        state.engine, keep=state.rejected_keep, source=source, endpoint=request.path[:64],
        status=status, error=code, message=message[:1000], details=details, body=body,
        ip=request.remote_addr, user_agent=request.headers.get("User-Agent"),
        origin=request.headers.get("Origin"))
    log_rejection(source, request.path[:64], status, code)


def _cookie_visitor(state):
    raw = request.cookies.get(state.cookie_name) if "HTTP_COOKIE" in request.environ else None
    return state.signer.unsign(raw) if raw else None


def _pixel_body() -> str:
    """What a refused pixel hit keeps: its query with `data` decoded when it is base64
    (L1: `sst forget` matches text, and base64 hid the ids and emails from it)."""
    args = request.args.to_dict(flat=True)
    raw = b64_data(args["data"]) if isinstance(args.get("data"), str) else None
    if raw is not None:
        args["data"] = raw.decode("utf-8", "replace")
    return dumps_text(args)


@bp.route("/v1/<kind>", methods=["POST"])
def collect(kind):
    if kind == METRICS:
        return _metrics()
    if kind not in SINGLE and kind not in BATCH:
        raise ApiError(404, "not_found", f"no endpoint /v1/{kind[:40]}")
    return _collect(kind)


@bp.route("/beacon/v1/batch", methods=["POST"])
def rudderstack_beacon():
    """RudderStack's beacon mode: a text/plain batch with the write key in the query."""
    return _collect("batch", allow_query=True)


def _metrics():
    """Segment's metrics (/v1/m): read a bounded body and drop it; 200 so the SDK moves on."""
    read_body(current_state().max_message_bytes)
    return _json_response(SUCCESS)


def _collect(kind, allow_query=False):
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
            payload, finite = parse(body)
        except MalformedJSON as exc:
            raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "malformed_json", "the body must be a JSON object")
        source, auth = authenticate(state, payload.get("writeKey"), allow_query=allow_query)

        if is_batch:
            messages = payload.get("batch")
            if not isinstance(messages, list) or not messages:
                raise ApiError(400, "invalid_message", "a batch needs a non-empty 'batch' list",
                               fields={"batch": "required, a non-empty list"})
            state.check_rate(source, len(messages))
            messages = [_merge_batch_defaults(m, payload) for m in messages]
        else:
            state.check_rate(source)
            payload["type"] = SINGLE[kind]
            messages = [payload]
        return _store(state, source, auth, messages, is_batch, body, payload, finite)
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


def _store(state, source, auth, messages, is_batch, body, payload, finite):
    info = request_info(source, auth, request.path, _batch_sent_at(payload) if is_batch else None)
    info.shallow = shallow(body, MAX_DEPTH)
    info.finite = finite
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
        prepared = _store_prepared(state, prepared, rejected)
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
                    body=dumps_text(messages[r["index"]]))
        resp = _json_response({"success": True, "rejected": rejected})
    else:
        resp = _json_response(SUCCESS)
    if info.visitor_id is not None and (browser or info.cookie_state == "valid"):
        set_cookie(state, resp, info.visitor_id)
    return resp


def _store_prepared(state, prepared, rejected):
    """Store the messages; if the database refuses a value (none should pass prepare, but
    a refusal must never sink the batch nor pose as an outage), store them one by one and
    reject only those it refuses. Returns the stored ones."""
    try:
        state.store(prepared)
        return prepared
    except StorageRefusedError as exc:
        logger.warning("the database refused a value, storing the messages one by one: %s",
                       exc)
    kept = []
    for item in prepared:
        try:
            state.store([item])
            kept.append(item)
        except StorageRefusedError:
            index = item.row["request"].get("batch_index", 0)
            rejected.append({"index": index, "messageId": item.row["message_id"],
                             "error": "invalid_message",
                             "message": "the database refused a value of this message"})
    if not kept:
        if len(prepared) == 1 and "batch_index" not in prepared[0].row["request"]:
            raise ApiError(400, "invalid_message", rejected[-1]["message"])
        raise ApiError(400, "invalid_batch", "no message in the batch is valid",
                       rejected=rejected)
    rejected.sort(key=lambda r: r["index"])
    return kept


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
        _reject(400, exc.code, exc.message, body=_pixel_body())
    except ApiError as exc:
        if exc.status != 429:
            name = source.name if source else getattr(exc, "source", None)
            _reject(exc.status, exc.code, exc.message, source=name, body=_pixel_body())
    except StorageUnavailableError as exc:
        logger.error("storage unavailable for a pixel hit: %s", exc)
    except Exception:  # an <img> cannot show an error: the contract is the GIF, always
        logger.exception("pixel hit failed on %s", request.path[:64])
    return resp


# --- the vendors' browser SDKs: their start-up documents and sst's first-party id ---------


def _source_for(write_key):
    source = current_state().sources.get(write_key) if write_key else None
    if source is None:
        raise ApiError(404, "unknown_write_key", "no source has this write key")
    g.cors_origins = source.origins  # readable by this key's pages only
    return source


@bp.get("/v1/projects/<write_key>/settings")
def segment_settings(write_key):
    """analytics-next's settings (the page sets cdnURL, or the snippet's _cdn, to sst)."""
    source = _source_for(write_key)
    # request.host and the scheme are the ones the browser used (ProxyFix when configured).
    body = sdk_settings.segment_settings(source.write_key, request.host + "/v1", request.scheme)
    resp = _json_response(body)
    resp.cache_control.max_age = 300  # what Segment's CDN does: a changed source shows soon
    return resp


@bp.get("/sourceConfig/")
@bp.get("/sourceConfig")
def rudderstack_source_config():
    """RudderStack's source config (the page sets configUrl to sst)."""
    source = _source_for(request.args.get("writeKey") or basic_auth_key())
    resp = _json_response(sdk_settings.rudderstack_source_config(source.name, source.write_key))
    resp.cache_control.max_age = 300
    return resp


@bp.route("/v1/visitor", methods=["POST"])
def visitor():
    """The visitor's first-party id for a vendor SDK: one credentialed call per page load.

    Body {"writeKey", "anonymousId"?}. The sst cookie's id when it is valid, else the SDK's
    anonymousId, else a new one; the answer (re)sets the cookie for 400 days and returns the
    id so the SDK sends it as its anonymousId (sst-segment.js, sst-rudderstack.js).
    """
    state = current_state()
    body = b""
    source = None
    try:
        body = read_body(state.max_message_bytes, "message_too_large")
        try:
            payload = loads(body) if body.strip() else {}
        except MalformedJSON as exc:
            raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "malformed_json", "the body must be a JSON object")
        source, auth = authenticate(state, payload.get("writeKey"), allow_query=True)
        state.check_rate(source)
        info = request_info(source, auth, request.path)
        visitor_id = choose_visitor(state, info, True, payload.get("anonymousId"))
    except ApiError as exc:
        if exc.status not in (429, 503):
            _reject(exc.status, exc.code, exc.message,
                    source=source.name if source else getattr(exc, "source", None), body=body)
        exc.details.setdefault("code", exc.code)
        raise
    resp = _json_response({"anonymousId": visitor_id, "cookie": info.cookie_state})
    resp.cache_control.no_store = True
    set_cookie(state, resp, visitor_id)
    return resp
