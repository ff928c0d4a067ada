"""Request helpers shared by the ingest and OTP blueprints: the body (bounded, gzip-aware),
the write key, the visitor cookie and the request's facts for `prepare`."""

from __future__ import annotations

import base64
import binascii

from flask import Response, request

from sst.clock import utcnow
from sst.config import normalize_origin
from sst.errors import ApiError
from sst.ingest.prepare import RequestInfo
from sst.ingest.touch import ad_cookies


def read_body(limit: int, code: str = "payload_too_large") -> bytes:
    """The request body, refusing more than `limit` bytes before reading them all.

    A gzip body (Content-Encoding: gzip, as Segment's SDKs send with gzip=True) is measured
    after decompression, so a small bomb cannot get past the limit.
    """
    environ = request.environ
    encoding = environ.get("HTTP_CONTENT_ENCODING")
    if encoding and encoding.strip().lower() in ("gzip", "x-gzip"):
        return gunzip(request.stream, limit, too_large(limit, code))
    declared = environ.get("CONTENT_LENGTH")
    if (declared and declared.isascii() and declared.isdigit()
            and "HTTP_TRANSFER_ENCODING" not in environ):
        # The common case, read straight from the server's input: exactly the declared
        # length, so nothing can block for more (werkzeug's stream wrapper costs ~11 µs).
        length = int(declared)
        if length > limit:
            raise too_large(limit, code)
        return environ["wsgi.input"].read(length) if length else b""
    # No (or an odd) length, or chunked: werkzeug decides what may be read.
    length = request.content_length
    if length is not None and length > limit:
        raise too_large(limit, code)
    data = request.stream.read(limit + 1)
    if len(data) > limit:
        raise too_large(limit, code)
    return data


def too_large(limit: int, code: str) -> ApiError:
    return ApiError(413, code, f"the body may be {limit // 1024} KiB at most")


def gunzip(stream, limit: int, too_large: ApiError) -> bytes:
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


def basic_auth_key() -> str | None:
    header = request.environ.get("HTTP_AUTHORIZATION")
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        return None
    return decoded.split(":", 1)[0] or None


def authenticate(state, body_key, *, allow_query=False):
    """(source, auth method) for the write key, or raise 401/403."""
    key, method = basic_auth_key(), "basic"
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


def choose_visitor(state, info: RequestInfo, browser: bool, first_anonymous_id) -> str | None:
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


def set_cookie(state, resp: Response, visitor_id: str) -> None:
    """Re-issue on every visit: browsers cap cookie lifetimes from the last time it was set."""
    resp.set_cookie(state.cookie_name, state.signer.sign(visitor_id),
                    max_age=state.cookie_max_age, secure=state.cookie_secure, httponly=True,
                    samesite="Lax", domain=state.cookie_domain, path="/")


def request_info(source, auth, endpoint, batch_sent_at=None) -> RequestInfo:
    # The WSGI environ rather than request.headers: the same values, a few µs cheaper each.
    environ = request.environ
    return RequestInfo(
        source=source.name, endpoint=endpoint, received_at=utcnow(),
        ip=environ.get("REMOTE_ADDR"), user_agent=environ.get("HTTP_USER_AGENT"),
        origin=environ.get("HTTP_ORIGIN"), auth=auth,
        content_type=environ.get("CONTENT_TYPE") or None,
        ad_cookies=ad_cookies(request.cookies) if "HTTP_COOKIE" in environ else {},
        batch_sent_at=batch_sent_at,
        # The pixel is a browser path whatever key it names: never trusted.
        trusted=not source.origins and not endpoint.startswith("/v1/pixel/"),
    )
