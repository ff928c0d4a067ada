"""H2: every route bounds its body before parsing it, whatever way it is sent (chunked,
form, multipart), and before the write key is looked at.

The bodies come from a stream that counts what the app reads, so the tests assert what
the server does (how much it takes in), not how long it takes."""

import pytest

BASE = "https://t.example.com"
HUGE = 64 * 1024 * 1024  # what an attacker offers; the app must read a small part of it


class Offer:
    """A request body of `total` bytes, produced on demand, counting what is read."""

    def __init__(self, total, piece=b"a=" + b"x" * 1000 + b"&"):
        self.total, self.piece, self.read_bytes = total, piece, 0

    def read(self, n=-1):
        left = self.total - self.read_bytes
        if n is None or n < 0:
            n = left
        n = min(n, left)
        reps = n // len(self.piece) + 1
        out = (self.piece * reps)[:n]
        self.read_bytes += len(out)
        return out

    def tell(self):
        return self.read_bytes

    def readline(self, limit=-1):
        return self.read(min(limit, 65536) if limit and limit > 0 else 65536)


def _post(client, path, ctype, offer, **headers):
    return client.post(BASE + path, content_type=ctype,
                       headers={"Transfer-Encoding": "chunked", **headers},
                       environ_overrides={"wsgi.input": offer, "wsgi.input_terminated": True})


@pytest.fixture
def otp_app(tmp_path):
    from sst import create_app
    from support.apps import base_config

    return create_app(base_config(DATABASE_URL=f"sqlite:///{tmp_path}/otp.db",
                                  IDENTITY={"otp_provider": "file",
                                            "otp_outbox": str(tmp_path / "outbox.jsonl")}))


@pytest.mark.parametrize("path", ["/v1/otp/send", "/v1/otp/verify"])
def test_otp_chunked_form_body_is_bounded_before_authentication(otp_app, path):
    offer = Offer(HUGE)
    r = _post(otp_app.test_client(), path, "application/x-www-form-urlencoded", offer)
    assert r.status_code == 413, r.data
    assert r.get_json()["error"] == "payload_too_large"
    assert offer.read_bytes < 1024 * 1024


def test_otp_multipart_is_refused_unread(otp_app):
    offer = Offer(HUGE, b"--b\r\nContent-Disposition: form-data; name=f; filename=x\r\n\r\n"
                  + b"x" * 4000)
    r = _post(otp_app.test_client(), "/v1/otp/send", "multipart/form-data; boundary=b", offer)
    assert r.status_code == 415
    assert offer.read_bytes < 1024 * 1024


@pytest.mark.parametrize("path", ["/v1/batch", "/v1/track", "/v1/otp/send", "/admin/",
                                  "/metrics", "/healthz", "/v1/m", "/beacon/v1/batch"])
def test_every_route_reads_a_bounded_part_of_a_chunked_body(otp_app, path):
    offer = Offer(HUGE, b"[" * 1000)
    r = _post(otp_app.test_client(), path, "application/json", offer)
    assert r.status_code != 500
    assert offer.read_bytes <= 1024 * 1024


def test_max_content_length_is_set_by_default(app):
    assert app.config["MAX_CONTENT_LENGTH"] <= 1024 * 1024
