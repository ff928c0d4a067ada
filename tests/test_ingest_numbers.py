"""M1 / L5: numbers JSON can carry but MySQL or a platform cannot (1e309 beside a 20-digit
integer), and values the database would have cut quietly."""

import json

from sqlalchemy import func, select

from sst.extensions import db
from sst.models import Event
from support.apps import SERVER_KEY

BASE = "https://t.example.com"
AUTH = {"Authorization": "Basic " + __import__("base64").b64encode(
    f"{SERVER_KEY}:".encode()).decode()}


def _post(client, path, text, **headers):
    return client.post(BASE + path, data=text, content_type="application/json",
                       headers={**AUTH, **headers})


def _events(app):
    with app.app_context():
        return {e.message_id: e for e in db.session.execute(select(Event)).scalars()}


def test_poison_number_is_a_400_for_that_message_not_a_503(mysql_app):
    client = mysql_app.test_client()
    r = _post(client, "/v1/track", '{"event":"x","userId":"u","messageId":"p-1",'
              '"properties":{"id":1234567890123456789012,"total":1e309}}')
    assert r.status_code == 400, r.data
    body = r.get_json()
    assert body["error"] == "invalid_message"
    assert "properties.total" in body["message"]
    assert "p-1" not in _events(mysql_app)


def test_poison_number_takes_only_its_own_message_out_of_a_batch(mysql_app):
    client = mysql_app.test_client()
    good = [f'{{"type":"track","event":"e","userId":"u","messageId":"ok-{i}"}}'
            for i in range(50)]
    bad = ('{"type":"track","event":"x","userId":"u","messageId":"bad",'
           '"properties":{"id":1234567890123456789012,"total":-1e309}}')
    r = _post(client, "/v1/batch", '{"batch":[' + ",".join(good[:25] + [bad] + good[25:])
              + "]}")
    assert r.status_code == 200, r.data
    rejected = r.get_json()["rejected"]
    assert [(x["index"], x["messageId"], x["error"]) for x in rejected] == [
        (25, "bad", "invalid_message")]
    stored = _events(mysql_app)
    assert len(stored) == 50 and "bad" not in stored


def test_1e309_alone_is_refused_not_stored_as_null(mysql_app):
    client = mysql_app.test_client()
    r = _post(client, "/v1/track", '{"event":"x","userId":"u","messageId":"n-1",'
              '"properties":{"total":1e309}}')
    assert r.status_code == 400
    assert "n-1" not in _events(mysql_app)


def test_a_20_digit_integer_is_stored_as_sent(mysql_app):
    client = mysql_app.test_client()
    r = _post(client, "/v1/track", '{"event":"x","userId":"u","messageId":"big-1",'
              '"properties":{"id":12345678901234567890123,"small":1e300}}')
    assert r.status_code == 200, r.data
    message = _events(mysql_app)["big-1"].message
    assert message["properties"]["id"] == 12345678901234567890123
    assert message["properties"]["small"] == 1e300


def test_a_long_user_agent_header_is_cut_on_record_not_silently(mysql_app):
    client = mysql_app.test_client()
    ua = "Mozilla/5.0 " + "x" * 988
    r = _post(client, "/v1/track", '{"event":"x","userId":"u","messageId":"ua-1"}',
              **{"User-Agent": ua})
    assert r.status_code == 200
    event = _events(mysql_app)["ua-1"]
    # A server call: its header is the caller's, kept on record (contract §5), not the visitor's.
    assert event.user_agent is None
    assert event.request["user_agent"] == ua[:512]
    assert event.request["user_agent_length"] == 1000


def test_a_long_context_user_agent_is_cut_on_record_not_silently(mysql_app):
    client = mysql_app.test_client()
    ua = "Mozilla/5.0 " + "y" * 988
    body = json.dumps({"event": "x", "userId": "u", "messageId": "ua-2",
                       "context": {"userAgent": ua}})
    assert _post(client, "/v1/track", body).status_code == 200
    event = _events(mysql_app)["ua-2"]
    assert event.user_agent == ua[:512]
    assert event.request["user_agent_length"] == 1000


def test_the_database_refusing_a_value_rejects_that_message_only(mysql_app, monkeypatch):
    """A value the database refuses (a CHECK) is a 400 for its message, never a 503."""
    from sst.errors import StorageRefusedError
    from sst.ingest import store

    real = store.store_events

    def picky(engine, items, fanout=False):
        if any(i.row["message_id"] == "refused" for i in items):
            raise StorageRefusedError("(4025, 'CONSTRAINT `events.message` failed')")
        return real(engine, items, fanout=fanout)

    monkeypatch.setattr(store, "store_events", picky)
    client = mysql_app.test_client()
    batch = [{"type": "track", "event": "e", "userId": "u", "messageId": m}
             for m in ("a", "refused", "b")]
    r = _post(client, "/v1/batch", json.dumps({"batch": batch}))
    assert r.status_code == 200, r.data
    assert [x["messageId"] for x in r.get_json()["rejected"]] == ["refused"]
    assert set(_events(mysql_app)) == {"a", "b"}
    r = _post(client, "/v1/track", json.dumps(batch[1]))
    assert r.status_code == 400
    with mysql_app.app_context():
        assert db.session.execute(select(func.count()).select_from(Event)).scalar() == 2
