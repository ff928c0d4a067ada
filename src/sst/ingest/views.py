"""Blueprint "ingest": Segment-compatible tracking API and the pixel.

Views stay thin: read the request, hand messages to messages.prepare(), store them with
store.store_events(), answer. Every refused request is kept in rejected_payloads.
"""

from __future__ import annotations

import base64
import binascii
import logging

from flask import Blueprint, Response, current_app, request

from sst.clock import utcnow
from sst.config import normalize_origin
from sst.cors import add_cors_headers
from sst.errors import ApiError, StorageUnavailableError
from sst.ingest import store
from sst.ingest.pixel import GIF, GIF_HEADERS, PixelError, decode_data, decode_dotted
from sst.ingest.prepare import MAX_DEPTH, Rejection, RequestInfo, prepare
from sst.ingest.schema import MESSAGE_TYPES
from sst.ingest.touch import ad_cookies
from sst.jsonutil import MalformedJSON, dumps, loads, shallow
from sst.logs import log_rejection
from sst.ops import metrics

logger = logging.getLogger(__name__)
bp = Blueprint("ingest", __name__)


@bp.after_request
def _after(resp):
    # One hook rather than two: Flask wraps each hook call (ensure_sync), a few µs apiece.
    return metrics.record_response(add_cors_headers(resp))


SUCCESS = b'{"success":true}'
SINGLE = {t: t for t in MESSAGE_TYPES}
BATCH = {"batch", "import"}


def sst():
    return current_app.extensions["sst"]


def _json_response(body: bytes | dict, status=200) -> Response:
    data = body if isinstance(body, bytes) else dumps(body).encode()
    return Response(data, status=status, mimetype="application/json")


def _read_body(limit: int, code: str = "payload_too_large") -> bytes:
    """The request body, refusing more than `limit` bytes before reading them all.

    A gzip body (Content-Encoding: gzip, as Segment's SDKs send with gzip=True) is measured
    after decompression, so a small bomb cannot get past the limit.
    """
    environ = request.environ
    encoding = environ.get("HTTP_CONTENT_ENCODING")
    if encoding and encoding.strip().lower() in ("gzip", "x-gzip"):
        return _gunzip(request.stream, limit, _too_large(limit, code))
    declared = environ.get("CONTENT_LENGTH")
    if (declared and declared.isascii() and declared.isdigit()
            and "HTTP_TRANSFER_ENCODING" not in environ):
        # The common case, read straight from the server's input: exactly the declared
        # length, so nothing can block for more (werkzeug's stream wrapper costs ~11 µs).
        length = int(declared)
        if length > limit:
            raise _too_large(limit, code)
        return environ["wsgi.input"].read(length) if length else b""
    # No (or an odd) length, or chunked: werkzeug decides what may be read.
    length = request.content_length
    if length is not None and length > limit:
        raise _too_large(limit, code)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise _too_large(limit, code)
    return data


def _too_large(limit: int, code: str) -> ApiError:
    return ApiError(413, code, f"the body may be {limit // 1024} KiB at most")


def _gunzip(stream, limit: int, too_large: ApiError) -> bytes:
    import zlib

    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = bytearray()
    read = 0
    try:
        while chunk := stream.read(64 * 1024):
            read += len(chunk)
            if read > limit + 16 * 1024:  # gzip adds a few bytes at most to what it holds
                raise too_large
            out += inflater.decompress(chunk, limit + 1 - len(out))
            if len(out) > limit:
                raise too_large
        out += inflater.flush()
    except zlib.error:
        raise ApiError(400, "malformed_body", "the body is not valid gzip") from None
    if len(out) > limit:
        raise too_large
    if not inflater.eof:
        raise ApiError(400, "malformed_body", "the gzip body is truncated")
    return bytes(out)


def _basic_auth_key() -> str | None:
    header = request.environ.get("HTTP_AUTHORIZATION")
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        return None
    return decoded.split(":", 1)[0] or None


def _authenticate(state, body_key, *, allow_query=False):
    """(source, auth method) for the write key, or raise 401/403."""
    key, method = _basic_auth_key(), "basic"
    if key is None and isinstance(body_key, str) and body_key:
        key, method = body_key, "body"
    if key is None and allow_query:
        key, method = request.args.get("writeKey"), "query"
    if not key:
        raise ApiError(401, "missing_write_key",
                       "send the write key as the HTTP Basic user name or as writeKey")
    source = state.sources.get(key)
    if source is None:
        raise ApiError(401, "unknown_write_key", "the write key is not known")
    origin = request.environ.get("HTTP_ORIGIN")
    if origin is not None and normalize_origin(origin) not in source.origins:
        err = ApiError(403, "origin_not_allowed",
                       f"origin {origin[:100]!r} may not send with this write key")
        err.source = source.name  # for the rejected_payloads row, not for the answer
        raise err
    return source, method


def _visitor(state, info: RequestInfo, browser: bool, first_anonymous_id) -> str | None:
    """Choose the visitor id: a valid cookie's, else the message's, else a new one."""
    raw = request.cookies.get(state.cookie_name) if "HTTP_COOKIE" in request.environ else None
    cookie_id = state.signer.unsign(raw) if raw else None
    if cookie_id is not None:
        info.cookie_state = "valid"
        return cookie_id
    info.cookie_state = "invalid" if raw else "absent"
    if not browser:
        return None
    info.cookie_state = "new"
    if isinstance(first_anonymous_id, str | int) and not isinstance(first_anonymous_id, bool):
        text = str(first_anonymous_id).strip()
        if 0 < len(text) <= 128:
            return text
    from sst.cookies import new_anonymous_id

    return new_anonymous_id()


def _set_cookie(state, resp: Response, visitor_id: str) -> None:
    """Re-issue on every visit: browsers cap cookie lifetimes from the last time it was set."""
    resp.set_cookie(state.cookie_name, state.signer.sign(visitor_id),
                    max_age=state.cookie_max_age, secure=state.cookie_secure, httponly=True,
                    samesite="Lax", domain=state.cookie_domain, path="/")


def _reject(status, code, message, *, source=None, details=None, body=None):
    state = sst()
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
    state = sst()
    is_batch = kind in BATCH
    body = b""
    source = None
    try:
        if is_batch:
            body = _read_body(state.max_batch_bytes)
        else:
            body = _read_body(state.max_message_bytes, "message_too_large")
        try:
            payload = loads(body)
        except MalformedJSON as exc:
            raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise ApiError(400, "malformed_json", "the body must be a JSON object")
        source, auth = _authenticate(state, payload.get("writeKey"))
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


def _request_info(source, auth, endpoint, batch_sent_at=None) -> RequestInfo:
    # The WSGI environ rather than request.headers: the same values, a few µs cheaper each.
    environ = request.environ
    return RequestInfo(
        source=source.name, endpoint=endpoint, received_at=utcnow(),
        ip=environ.get("REMOTE_ADDR"), user_agent=environ.get("HTTP_USER_AGENT"),
        origin=environ.get("HTTP_ORIGIN"), auth=auth,
        content_type=environ.get("CONTENT_TYPE") or None,
        ad_cookies=ad_cookies(request.cookies) if "HTTP_COOKIE" in environ else {},
        batch_sent_at=batch_sent_at,
    )


def _batch_sent_at(payload):
    from sst.clock import parse_time

    try:
        return parse_time(payload["sentAt"]) if payload.get("sentAt") else None
    except (ValueError, TypeError):
        return None


def _store(state, source, auth, messages, is_batch, body, payload):
    info = _request_info(source, auth, request.path, _batch_sent_at(payload) if is_batch else None)
    info.shallow = shallow(body, MAX_DEPTH)
    browser = info.origin is not None
    first = next((m.get("anonymousId") for m in messages if isinstance(m, dict)), None)
    info.visitor_id = _visitor(state, info, browser, first)

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
        metrics.count_messages(source.name, 0, len(rejected))
        raise ApiError(400, "invalid_batch", "no message in the batch is valid",
                       rejected=rejected)
    try:
        state.store(prepared)
        metrics.count_messages(source.name, len(prepared), len(rejected))
    except StorageUnavailableError as exc:
        logger.error("storage unavailable, answering 503: %s", exc)
        err = ApiError(503, "storage_unavailable",
                       "events cannot be stored right now; retry later")
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
        _set_cookie(state, resp, info.visitor_id)
    return resp


@bp.route("/v1/pixel/<kind>", methods=["GET"])
def pixel(kind):
    """Always the GIF: an <img> cannot show an error, so refusals are only recorded."""
    resp = Response(GIF, status=200, headers=GIF_HEADERS)
    state = sst()
    source = None
    try:
        if kind not in SINGLE:
            raise ApiError(404, "not_found", f"no pixel type {kind[:20]!r}")
        if "data" in request.args:
            message = decode_data(request.args["data"], state.pixel_max_data)
        else:
            message = decode_dotted(request.args)
        source, auth = _authenticate(state, request.args.get("writeKey")
                                     or message.get("writeKey"), allow_query=False)
        state.check_rate(source)
        message["type"] = kind
        info = _request_info(source, auth, request.path)
        info.extra_touch_url = request.url
        info.visitor_id = _visitor(state, info, True, message.get("anonymousId"))
        result = prepare(message, info, None, state.max_message_bytes)
        if isinstance(result, Rejection):
            raise ApiError(result.status, result.error, result.message)
        state.store([result])
        metrics.count_messages(source.name, 1, 0)
        _set_cookie(state, resp, info.visitor_id)
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
