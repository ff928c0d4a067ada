"""The tracking pixel: a message encoded in a GET query string, answered with a 1x1 GIF."""

from __future__ import annotations

import base64
import binascii

from sst.jsonutil import MalformedJSON, loads

# The classic transparent 1x1 GIF89a: 43 bytes.
GIF = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
GIF_HEADERS = {
    "Content-Type": "image/gif",
    "Cache-Control": "no-cache, no-store, must-revalidate, private, max-age=0",
    "Pragma": "no-cache",
    "Expires": "0",
}


class PixelError(ValueError):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


def b64_data(data: str) -> bytes | None:
    """The bytes of ?data= (standard or URL-safe alphabet, padding optional), or None."""
    text = data.strip().replace(" ", "+")  # '+' arrives as a space when not percent-encoded
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        return None


def decode_data(data: str, max_len: int) -> dict:
    """?data=<base64 JSON> (standard or URL-safe alphabet, padding optional)."""
    if len(data) > max_len:
        raise PixelError("message_too_large", f"data may be {max_len} characters at most")
    raw = b64_data(data)
    if raw is None:
        raise PixelError("malformed_data", "data is not base64")
    try:
        msg = loads(raw)
    except MalformedJSON:
        raise PixelError("malformed_json", "data is not base64-encoded JSON") from None
    if not isinstance(msg, dict):
        raise PixelError("invalid_message", "data must encode a JSON object")
    return msg


def decode_dotted(args) -> dict:
    """?event=Opened&properties.campaign=x&context.page.url=... -> nested message."""
    msg: dict = {}
    for key, value in args.items(multi=False) if hasattr(args, "items") else args:
        if key in ("data", "writeKey", "_"):
            continue
        parts = key.split(".")
        if len(parts) > 4 or not all(parts):
            raise PixelError("invalid_message", f"parameter {key[:50]!r} is not a message field")
        node = msg
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise PixelError("invalid_message", f"parameter {key[:50]!r} conflicts with "
                                 f"{part!r}")
            node = child
        if isinstance(node.get(parts[-1]), dict):
            raise PixelError("invalid_message", f"parameter {key[:50]!r} conflicts with another")
        node[parts[-1]] = value
    return msg
