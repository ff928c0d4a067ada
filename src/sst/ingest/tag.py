"""Blueprint "browser": the browser tag (GET /v1/sst.js) and, in development, the example site.

The example pages under examples/ hold the placeholders {{API_HOST}} and {{WRITE_KEY}};
render_example() fills them in, for `sst dev` (SERVE_EXAMPLES) and for the browser tests.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from pathlib import Path

from flask import Blueprint, Response, abort, current_app, request, send_from_directory

from sst.config import normalize_origin
from sst.extensions import state as current_state

bp = Blueprint("browser", __name__)

# The file changes only with a release; an hour keeps a deploy visible soon, and the ETag
# makes the revalidation after that a 304.
SCRIPT_MAX_AGE = 3600
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples"  # the repo's, in a checkout


@cache
def script(name: str = "sst.js") -> tuple[bytes, str]:
    """A served script (sst.js, or a vendor SDK's first-party id plugin) and its ETag."""
    data = resources.files("sst").joinpath(f"static/{name}").read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:20]


@bp.get("/v1/sst.js")
def sst_js():
    return _serve("sst.js")


@bp.get("/v1/sst-segment.js")
def sst_segment_js():
    """The analytics-next plugin that gives it sst's first-party visitor id."""
    return _serve("sst-segment.js")


@bp.get("/v1/sst-rudderstack.js")
def sst_rudderstack_js():
    """The RudderStack v3 loader that gives it sst's first-party visitor id."""
    return _serve("sst-rudderstack.js")


def _serve(name):
    data, etag = script(name)
    resp = Response(data, mimetype="text/javascript")
    resp.set_etag(etag)
    resp.cache_control.public = True
    resp.cache_control.max_age = SCRIPT_MAX_AGE
    # Public and credential-free: lets a site load it with integrity= and crossorigin.
    resp.headers["Access-Control-Allow-Origin"] = "*"
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp.make_conditional(request)


def render_example(path: Path, api_host: str, write_key: str) -> bytes:
    """An example page with the API host and write key written into its snippet."""
    text = path.read_text(encoding="utf-8")
    return text.replace("{{API_HOST}}", api_host.rstrip("/")).replace(
        "{{WRITE_KEY}}", write_key).encode("utf-8")


def _dev_write_key(origin: str) -> str:
    for source in current_state().sources.values():
        if normalize_origin(origin) in source.origins:
            return source.write_key
    abort(404, f"no source lists the origin {origin}; add it to a [[source]]'s origins")


@bp.get("/example/")
@bp.get("/example/<path:name>")
def example(name="landing.html"):
    """The example site, served by `sst dev` only: same origin as the API, on plain HTTP."""
    if not current_app.config.get("SERVE_EXAMPLES"):
        abort(404)
    folder = Path(current_app.config.get("EXAMPLES_DIR") or EXAMPLES_DIR)
    if not folder.is_dir():
        abort(404, f"no examples folder at {folder}")
    if not name.endswith(".html"):
        return send_from_directory(folder, name, max_age=0)
    target = (folder / name).resolve()
    if target.parent != folder.resolve() or not target.is_file():
        abort(404)
    host = request.host_url.rstrip("/")
    resp = Response(render_example(target, host, _dev_write_key(host)), mimetype="text/html")
    resp.cache_control.no_cache = True
    return resp
