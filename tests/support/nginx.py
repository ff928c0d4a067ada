"""Run deploy/nginx/sst.conf for real: on free local ports, with a temporary prefix and a
self-signed certificate. Only the lines that name the deployment's host change (the
upstream and the listen addresses). Each is checked to be there exactly once, and the rest
(buffering, timeouts, headers) is the repository's file as it stands.
Used by tests/test_deploy*.py and scripts/bench_slow_clients."""

from __future__ import annotations

import datetime
import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "deploy" / "nginx" / "sst.conf"
NGINX = os.environ.get("SST_TEST_NGINX", "/usr/sbin/nginx")

HARNESS = """\
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
worker_processes 1;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {prefix}/sst.conf;
}}
"""


def _sub(text: str, pattern: str, repl: str) -> str:
    new, count = re.subn(pattern, repl, text, flags=re.M)
    assert count == 1, f"deploy/nginx/sst.conf: expected one line matching {pattern!r}"
    return new


def render(upstream: str, http_port: int, https_port: int) -> str:
    text = CONF.read_text()
    text = _sub(text, r"^(\s*server )web:8000;", rf"\g<1>{upstream};")
    text = _sub(text, r"^(\s*listen )80;", rf"\g<1>127.0.0.1:{http_port};")
    text = _sub(text, r"^\s*listen \[::\]:80;\n", "")
    text = _sub(text, r"^(\s*listen )443 ssl;", rf"\g<1>127.0.0.1:{https_port} ssl;")
    return _sub(text, r"^\s*listen \[::\]:443 ssl;\n", "")


def self_signed(folder: Path) -> None:
    """certs/fullchain.pem and certs/privkey.pem for 127.0.0.1 (cryptography is an sst
    requirement already)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .sign(key, hashes.SHA256()))
    certs = folder / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    (certs / "fullchain.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (certs / "privkey.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))


def prepare(prefix: Path, upstream: str, http_port: int, https_port: int) -> Path:
    """A prefix folder holding nginx.conf (which includes the rendered sst.conf) and
    certificates where sst.conf's relative paths look. Returns nginx.conf's path."""
    if not Path(NGINX).is_file():
        raise AssertionError(f"{NGINX} is missing: run scripts/deploy_deps.sh "
                             "(scripts/test does)")
    prefix.mkdir(parents=True, exist_ok=True)
    (prefix / "sst.conf").write_text(render(upstream, http_port, https_port))
    self_signed(prefix)
    user = "user root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(HARNESS.format(prefix=prefix, user=user))
    return conf


def argv(conf: Path, *extra: str) -> list[str]:
    # -p: relative paths in the config (the certificates) resolve against the prefix.
    return [NGINX, "-p", f"{conf.parent}/", "-c", str(conf), *extra]


def check(conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run(argv(conf, "-t"), capture_output=True, text=True, timeout=30)


def command(conf: Path) -> list[str]:
    return argv(conf, "-g", "daemon off;")
