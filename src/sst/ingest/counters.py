"""Prometheus ingest counters, counted in the request path (a dict look-up and an add, about
a microsecond); `GET /metrics` (sst.ops.metrics) exposes them.

``sst_ingest_requests_total{endpoint, status}`` and
``sst_ingest_messages_total{source, result="stored"|"rejected"}``. The ingest views call
`count_request` (or use `record_response` as an after-request hook) and `count_messages`.
"""

from __future__ import annotations

from flask import request
from prometheus_client import CollectorRegistry, Counter

ENDPOINTS = frozenset(("track", "page", "screen", "identify", "alias", "group", "batch",
                       "import"))

# A registry of our own: the counters never clash with whatever else registers globally.
INGEST = CollectorRegistry()
REQUESTS = Counter("sst_ingest_requests", "Ingest HTTP requests by endpoint and status code.",
                   ["endpoint", "status"], registry=INGEST)
MESSAGES = Counter("sst_ingest_messages", "Ingested messages stored or rejected, by source.",
                   ["source", "result"], registry=INGEST)


# Label children by key: labels() validates and locks on every call (~4 us); a dict hit does
# not. Both label sets are small and fixed (call types x status codes, configured sources).
_children: dict = {}


def _child(counter, *labels):
    child = _children.get((counter, labels))
    if child is None:
        child = _children[(counter, labels)] = counter.labels(*labels)
    return child


def count_request(endpoint: str, status: int) -> None:
    """Count one ingest request. `endpoint` must come from a short fixed list (label values
    are time series): the Segment call type, "pixel" or "other"."""
    _child(REQUESTS, endpoint, status).inc()


def count_messages(source: str | None, stored: int, rejected: int) -> None:
    """Count the messages of one request that were stored and rejected."""
    name = source or "unknown"
    if stored:
        _child(MESSAGES, name, "stored").inc(stored)
    if rejected:
        _child(MESSAGES, name, "rejected").inc(rejected)


def endpoint_label(req=None) -> str:
    """The `endpoint` label for an ingest request: the call type, "pixel" or "other"."""
    req = req or request
    if req.endpoint == "ingest.pixel":
        return "pixel"
    kind = (req.view_args or {}).get("kind")
    return kind if req.endpoint == "ingest.collect" and kind in ENDPOINTS else "other"


def record_response(response):
    """after_request hook for the ingest blueprint: counts every answer, errors included."""
    count_request(endpoint_label(), response.status_code)
    return response
