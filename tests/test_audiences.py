"""Audiences: config, member rules, and the Meta / Google / csv files, hashes checked
against the platforms' documented examples."""

import csv
import hashlib
import io
from datetime import UTC, datetime, timedelta

import pytest

from sst import audiences as aud
from sst.cli.audiences import audience as audience_cmd
from sst.errors import ConfigError
from sst.extensions import db
from sst.identity import people
from support.apps import ORIGIN, SERVER_KEY, WRITE_KEY, make_mysql_app, truncate_all


def sha(s):
    return hashlib.sha256(s.encode()).hexdigest()


# Meta, Conversions API customer information parameters (the same EMAIL / PHONE rules as
# Custom Audiences): "John_Smith@gmail.com" -> "john_smith@gmail.com" ->
META_EM = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
# "(650)555-1212" -> "16505551212" ->
META_PH = "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"
# Google Data Manager formatting guide: "cloudy.sanfrancisco+shopping@gmail.com" ->
# "cloudysanfrancisco@gmail.com"; "(800)555-0100" -> "+18005550100".
GOOGLE_EM = "223ebda6f6889b1494551ba902d9d381daf2f642bae055888e96343d53e9f9c4"
GOOGLE_PH = "fb4f73a6ec5fdb7077d564cdd22c3554b43ce49168550c3b12c547b78c517b30"

RULE = {"name": "cart", "include_events": ["Product Added"],
        "exclude_events": ["Order Completed"], "window": "30d"}


# --- config ------------------------------------------------------------------------------------


def test_load_audiences_defaults():
    a = aud.load_audiences([{"name": "x", "include_events": ["$page", "Signed Up"]}])["x"]
    assert a.include == ("$page", "Signed Up")
    assert a.exclude == () and a.sources == () and a.verified_only is False
    assert a.window == timedelta(days=30)


@pytest.mark.parametrize(("window", "expected"), [
    ("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(weeks=2)),
    (7, timedelta(days=7)),
])
def test_window(window, expected):
    assert aud.parse_window(window) == expected


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "x"}, "include_events"),
    ({"name": "x", "include_events": []}, "include_events"),
    ({"name": "x", "include_events": ["A"], "window": "soon"}, "window"),
    ({"name": "x", "include_events": ["A"], "window": 0}, "window"),
    ({"name": "x", "include_events": ["$click"]}, "$click"),
    ({"name": "x", "include_events": ["A"], "colour": "red"}, "unknown key"),
    ({"name": "bad name!", "include_events": ["A"]}, "name"),
])
def test_load_audiences_errors(entry, message):
    with pytest.raises(ConfigError, match="audience") as exc:
        aud.load_audiences([entry])
    assert message in str(exc.value)


def test_duplicate_names_refused():
    with pytest.raises(ConfigError, match="used twice"):
        aud.load_audiences([{"name": "x", "include_events": ["A"]}] * 2)


# --- file rows, against the documented examples -----------------------------------------------


def test_meta_row_documented_vectors():
    m = aud.Member(kind="person", key="u_ABC", phone="+16505551212",
                   emails=["  John_Smith@gmail.com "])
    row = aud.meta_row(m)
    assert row["email"] == [META_EM]
    assert row["phone"] == META_PH
    assert row["extern_id"] == sha("u_abc")  # lower(trim(userId)), as the connectors send


def test_google_row_documented_vectors():
    m = aud.Member(kind="user", key="cust-1", phone="+18005550100",
                   emails=["cloudy.sanfrancisco+shopping@gmail.com"])
    row = aud.google_row(m)
    assert row["email"] == [GOOGLE_EM]
    assert row["phone"] == GOOGLE_PH
    assert row["extern_id"] is None  # Customer Match contact files have no such column


def test_google_keeps_dots_and_plus_elsewhere():
    # Data Manager guide: "user.name+NYC@Example.com" -> "user.name+nyc@example.com"
    m = aud.Member(kind="user", key="k", emails=["user.name+NYC@Example.com"])
    assert aud.google_row(m)["email"] == [sha("user.name+nyc@example.com")]


def test_meta_keeps_gmail_dots():
    m = aud.Member(kind="user", key="k", emails=["cloudy.sanfrancisco+shopping@gmail.com"])
    assert aud.meta_row(m)["email"] == [sha("cloudy.sanfrancisco+shopping@gmail.com")]


def test_at_most_three_distinct_emails():
    m = aud.Member(kind="user", key="k", emails=["a@x.com", "A@X.com ", "b@x.com", "c@x.com",
                                                 "d@x.com", "not-an-email"])
    assert aud.meta_row(m)["email"] == [sha("a@x.com"), sha("b@x.com"), sha("c@x.com")]


def test_csv_row_layout():
    m = aud.Member(kind="person", key="u_1", phone="+16505551212", emails=["a@x.com"])
    row = aud.csv_row(m)
    assert row == {"email": [sha("a@x.com")], "phone": sha("+16505551212"),
                   "extern_id": sha("u_1")}


# --- members from stored events -------------------------------------------------------------


def _now():
    return datetime.now(UTC)


def _iso(dt):
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _post(client, body, key=SERVER_KEY, headers=None):
    r = client.post("/v1/" + body.pop("type"), json=body, auth=(key, "") if key else None,
                    headers=headers)
    assert r.status_code == 200, r.data


def seed(app):
    """Five would-be members; see each comment for what it tests."""
    c = app.test_client()
    state = app.extensions["sst"]
    secret = app.config["SECRET_KEY"]
    old = _iso(_now() - timedelta(days=60))
    # Verified person on two devices: adds on the laptop, email on the phone's identify.
    person, _ = people.person_for_phone(state.engine, "+16505551212", secret)
    people.link_device(state.engine, "p-laptop", person)
    people.link_device(state.engine, "p-phone", person)
    for i in range(3):
        _post(c, {"type": "track", "event": "Product Added", "anonymousId": "p-laptop",
                  "messageId": f"p-add-{i}"})
    _post(c, {"type": "identify", "userId": person, "anonymousId": "p-phone",
              "messageId": "p-id", "traits": {"email": "  John_Smith@gmail.com "}})
    # A userId that never verified: the identify links the device; the add is anonymous.
    _post(c, {"type": "identify", "userId": "cust-7", "anonymousId": "u-dev",
              "messageId": "u-id", "traits": {"email": "cloudy.sanfrancisco+shopping@gmail.com"}})
    _post(c, {"type": "track", "event": "Product Added", "anonymousId": "u-dev",
              "messageId": "u-add", "context": {"traits": {"email": "second@example.com"}}})
    # An anonymous visitor: a member with nothing to match on.
    _post(c, {"type": "track", "event": "Product Added", "anonymousId": "anon-1",
              "messageId": "a-add"})
    # Bought: excluded.
    _post(c, {"type": "track", "event": "Product Added", "userId": "cust-9",
              "messageId": "x-add", "traits": {"email": "buyer@example.com"}})
    _post(c, {"type": "track", "event": "Order Completed", "userId": "cust-9",
              "messageId": "x-buy"})
    # Outside the window.
    _post(c, {"type": "track", "event": "Product Added", "userId": "cust-old",
              "messageId": "o-add", "timestamp": old})
    # Another source (the browser one).
    _post(c, {"type": "track", "event": "Product Added", "userId": "cust-web",
              "messageId": "w-add", "writeKey": WRITE_KEY}, key=None,
          headers={"Origin": ORIGIN})
    return person


@pytest.fixture(params=["sqlite", "mariadb"])
def any_app(request, tmp_path):
    if request.param == "sqlite":
        yield request.getfixturevalue("app")
        return
    mysql_url = request.getfixturevalue("mysql_url")
    app = make_mysql_app(mysql_url)
    truncate_all(app)
    yield app
    with app.app_context():
        db.engine.dispose()


def _members(app, rule, page=2):
    a = aud.load_audiences([rule])[rule["name"]]
    with app.app_context():
        return list(aud.iter_members(app.extensions["sst"], a, secret=app.config["SECRET_KEY"],
                                     page=page))


def test_members_each_once_with_exclusions(any_app):
    person = seed(any_app)
    members = _members(any_app, {**RULE, "sources": ["server"]})
    got = sorted((m.kind, m.key) for m in members)
    assert got == [("anonymous", "anon-1"), ("person", person), ("user", "cust-7")]
    p = next(m for m in members if m.kind == "person")
    assert p.phone == "+16505551212"
    assert p.anon_ids == {"p-laptop", "p-phone"}
    assert [e.strip() for e in p.emails] == ["John_Smith@gmail.com"]
    u = next(m for m in members if m.kind == "user")
    assert set(u.emails) == {"cloudy.sanfrancisco+shopping@gmail.com", "second@example.com"}


def test_members_all_sources_and_page_sizes(any_app):
    seed(any_app)
    for page in (1, 3, 1000):
        keys = sorted(m.key for m in _members(any_app, RULE, page=page))
        assert len(keys) == len(set(keys)) == 4
        assert "cust-web" in keys and "cust-old" not in keys and "cust-9" not in keys


def test_verified_only(any_app):
    person = seed(any_app)
    members = _members(any_app, {**RULE, "verified_only": True})
    assert [(m.kind, m.key) for m in members] == [("person", person)]


def _export(app, fmt, rule=RULE):
    a = aud.load_audiences([rule])[rule["name"]]
    out = io.StringIO()
    with app.app_context():
        stats = aud.export(app.extensions["sst"], a, out, fmt, secret=app.config["SECRET_KEY"],
                           page=2)
    return list(csv.reader(io.StringIO(out.getvalue()))), stats


def test_export_meta_file(any_app):
    person = seed(any_app)
    rows, stats = _export(any_app, "meta", {**RULE, "sources": ["server"]})
    assert rows[0] == ["email", "email", "email", "phone", "extern_id"]
    by_ext = {r[4]: r for r in rows[1:]}
    assert by_ext[sha(person.lower())] == [META_EM, "", "", META_PH, sha(person.lower())]
    user = by_ext[sha("cust-7")]
    assert set(user[:2]) == {sha("cloudy.sanfrancisco+shopping@gmail.com"),
                             sha("second@example.com")}
    assert user[3] == ""
    assert len(rows) == 3  # the anonymous member has nothing Meta can match
    assert (stats.members, stats.written, stats.without_identifiers) == (3, 2, 1)
    assert (stats.with_email, stats.with_phone, stats.with_external_id) == (2, 1, 2)
    assert stats.excluded == 1


def test_export_google_file(any_app):
    seed(any_app)
    rows, stats = _export(any_app, "google", {**RULE, "sources": ["server"]})
    assert rows[0] == ["Email", "Email", "Email", "Phone"]
    body = rows[1:]
    person = next(r for r in body if r[3])
    assert person == [META_EM, "", "", sha("+16505551212")]  # gmail rule: no dots to drop
    user = next(r for r in body if not r[3])
    assert GOOGLE_EM in user[:2] and sha("second@example.com") in user[:2]
    assert stats.written == 2


def test_export_csv_file(any_app):
    person = seed(any_app)
    rows, _ = _export(any_app, "csv", {**RULE, "verified_only": True})
    assert rows == [["email_sha256_1", "email_sha256_2", "email_sha256_3", "phone_sha256",
                     "external_id_sha256", "member_type"],
                    [META_EM, "", "", sha("+16505551212"), sha(person.lower()), "person"]]


def test_export_never_writes_clear_identifiers(app):
    person = seed(app)
    for fmt in aud.FORMATS:
        rows, _ = _export(app, fmt)
        text = "\n".join(",".join(r) for r in rows).lower()
        for clear in ("john_smith", "6505551212", "cust-7", person.lower(), "p-laptop",
                      "anon-1", "second@"):
            assert clear not in text


def test_cli_export_writes_private_file(app, tmp_path):
    seed(app)
    app.config["AUDIENCES"] = [RULE]
    path = tmp_path / "cart.csv"
    result = app.test_cli_runner().invoke(audience_cmd, ["export", "cart", "--format", "meta",
                                                         "-o", str(path)])
    assert result.exit_code == 0, result.output
    assert (path.stat().st_mode & 0o777) == 0o600
    rows = list(csv.reader(path.open()))
    assert rows[0][0] == "email" and len(rows) == 4  # person, cust-7, cust-web
    assert "3 row(s) written" in result.output


def test_cli_unknown_audience(app):
    app.config["AUDIENCES"] = [RULE]
    result = app.test_cli_runner().invoke(audience_cmd, ["export", "nope", "--format", "csv"])
    assert result.exit_code != 0
    assert "unknown audience 'nope'" in result.output


def test_cli_bad_config_exits_2(app):
    app.config["AUDIENCES"] = [{"name": "x"}]
    result = app.test_cli_runner().invoke(audience_cmd, ["list"])
    assert result.exit_code == 2
    assert "include_events" in result.output
