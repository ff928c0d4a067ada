"""Concurrent requests at a live server on MariaDB: duplicates stored once, no 5xx."""

import threading

import requests
from sqlalchemy import func, select

from sst.extensions import db
from sst.models import ClickId, Event, Visitor
from support.apps import SERVER_KEY, live_server

THREADS = 16


def post_all(url, bodies):
    """POST every body at once (all threads start together); returns the statuses."""
    start = threading.Barrier(len(bodies))
    statuses = [None] * len(bodies)

    def send(i, body):
        with requests.Session() as session:
            start.wait()
            r = session.post(url + "/v1/track", json=body, auth=(SERVER_KEY, ""), timeout=30)
            statuses[i] = (r.status_code, r.text)

    threads = [threading.Thread(target=send, args=(i, b)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def count(app, model, *where):
    with app.app_context():
        return db.session.execute(select(func.count()).select_from(model).where(*where)).scalar()


def test_concurrent_duplicates_are_stored_once_and_all_answered_200(mysql_app):
    body = {"event": "Order Completed", "userId": "u1", "messageId": "dup-1"}
    with live_server(mysql_app) as url:
        statuses = post_all(url, [body] * THREADS)
    assert statuses == [(200, '{"success":true}')] * THREADS
    assert count(mysql_app, Event) == 1


def test_concurrent_duplicates_with_a_visitor_touch_are_stored_once(mysql_app):
    body = {"event": "Viewed", "anonymousId": "v-1", "messageId": "dup-2",
            "context": {"page": {"url": "https://x.test/?gclid=G-1&utm_source=ads"}}}
    with live_server(mysql_app) as url:
        statuses = post_all(url, [body] * THREADS)
    assert {s for s, _ in statuses} == {200}
    assert count(mysql_app, Event) == 1
    assert count(mysql_app, Visitor) == 1
    assert count(mysql_app, ClickId) == 1


def test_concurrent_events_of_one_visitor_all_succeed(mysql_app):
    # Many beacons of one page view at once: they lock the same visitor row.
    bodies = [{"event": f"E{i}", "anonymousId": "v-1", "messageId": f"m-{i}",
               "context": {"page": {"url": f"https://x.test/?gclid=G-{i % 3}&utm_source=s"}}}
              for i in range(THREADS)]
    with live_server(mysql_app) as url:
        statuses = post_all(url, bodies)
    assert {s for s, _ in statuses} == {200}, statuses
    assert count(mysql_app, Event) == THREADS
    assert count(mysql_app, Visitor) == 1
    assert count(mysql_app, ClickId) == 3


def test_concurrent_events_of_new_visitors_all_succeed(mysql_app):
    bodies = [{"event": "E", "anonymousId": f"v-{i % 4}", "messageId": f"m-{i}",
               "context": {"page": {"url": "https://x.test/?fbclid=F-1"}}}
              for i in range(THREADS)]
    with live_server(mysql_app) as url:
        statuses = post_all(url, bodies)
    assert {s for s, _ in statuses} == {200}, statuses
    assert count(mysql_app, Visitor) == 4
    assert count(mysql_app, ClickId) == 4
