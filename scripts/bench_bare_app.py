"""The reference for scripts/bench_ingest: a bare Flask endpoint that only parses the JSON.

It answers what sst answers ({"success": true}) after orjson-parsing the same body, under the
same gunicorn settings; sst's req/s is reported as a share of this one's.
"""

import orjson
from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/v1/track")
def track():
    orjson.loads(request.get_data())
    return Response(b'{"success": true}', mimetype="application/json")
