from conftest import WRITE_KEY


def test_track_is_stored_once_on_mariadb(mysql_app, mysql_client):
    from sst.models import Event
    from sst.extensions import db

    body = {"event": "Signed Up", "anonymousId": "a-1", "messageId": "m-1",
            "context": {"page": {"url": "https://www.example.com/?gclid=G1&fbclid=F1"}}}
    for _ in range(2):
        r = mysql_client.post("/v1/track", json=body, auth=(WRITE_KEY, ""))
        assert r.status_code == 200, r.data
    with mysql_app.app_context():
        rows = db.session.query(Event).all()
        assert [(e.message_id, e.event) for e in rows] == [("m-1", "Signed Up")]
