"""deploy/: the compose file, the image, the systemd units and the nginx proxy checked
against what sst really is. There is no Docker engine here, so compose.yaml is parsed and
every command is resolved against sst's Click CLI and gunicorn's own argument parser. The
nginx config passes `nginx -t` and runs in front of a real gunicorn, where it must keep slow
clients off the sync worker and pass the client address the way sst's trusted-proxy
setting (SST_PROXY_FIX_X_FOR=1) reads it."""

from __future__ import annotations

import base64
import configparser
import json
import runpy
import shlex
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import yaml

from support import nginx
from support.servers import free_port, get, start, stop, wait_http

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
GUNICORN_CONF = "/etc/sst/gunicorn.conf.py"  # where the image and the units put it


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def env_file(path: Path) -> dict:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines()
             if line.strip() and not line.lstrip().startswith("#"))
    return {k.strip(): v.strip() for k, v in pairs}


def resolve_sst(args: list[str]) -> click.Context:
    """Parse `sst ARGS` as the CLI would, without running it: an unknown command, an unknown
    option or a bad value raises click's UsageError."""
    from sst.cli import main

    cmd, ctx, name, rest = main, None, "sst", list(args)
    while True:
        ctx = cmd.make_context(name, rest, parent=ctx)
        if not isinstance(cmd, click.Group):
            return ctx
        rest = [*ctx._protected_args, *ctx.args]
        assert rest, f"sst {' '.join(args)}: a group without a command"
        name, cmd, rest = cmd.resolve_command(ctx, rest)


def gunicorn_settings(args: list[str]) -> dict:
    """Parse a gunicorn command line with gunicorn's parser and load its config file (the
    repo's deploy/gunicorn.conf.py, validated setting by setting)."""
    from gunicorn.config import Config

    assert args[0] == "gunicorn"
    cfg = Config()
    try:
        ns = cfg.parser().parse_args(args[1:])
    except SystemExit as exc:
        raise AssertionError(f"gunicorn rejects {args}") from exc
    assert ns.args == ["sst.wsgi:app"], ns.args  # the installed package's entry (contract §1)
    assert ns.config == GUNICORN_CONF
    for key, value in runpy.run_path(str(DEPLOY / "gunicorn.conf.py")).items():
        if key in cfg.settings:
            cfg.set(key, value)
    # Then the command line over the file, as gunicorn's own load_config does.
    for key, value in vars(ns).items():
        if value is not None and key != "args" and key in cfg.settings:
            cfg.set(key, value)
    return {key: cfg.settings[key].get() for key in cfg.settings}


def check_command(argv: list[str]) -> None:
    if argv[0] == "sst":
        resolve_sst(argv[1:])
    else:
        gunicorn_settings(argv)


# --- compose ----------------------------------------------------------------------------------


def test_compose_services_and_commands_match_the_cli():
    services = compose()["services"]
    assert set(services) == {"db", "redis", "migrate", "web", "worker", "proxy"}
    sst_services = {n for n, s in services.items() if s.get("image") == "sst:local"}
    assert sst_services == {"migrate", "web", "worker"}
    for name in sst_services:
        check_command(services[name]["command"])
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert resolve_sst(services["migrate"]["command"][1:]).command.name == "upgrade"
    assert resolve_sst(services["worker"]["command"][1:]).command.name == "worker"
    assert services["web"]["command"][0] == "gunicorn"


def test_compose_runs_migrations_once_before_web_and_workers():
    services = compose()["services"]
    assert services["migrate"]["restart"] == "no"
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}
    assert services["migrate"]["depends_on"]["db"] == {"condition": "service_healthy"}
    assert services["worker"]["deploy"]["replicas"] >= 1


def test_compose_only_the_buffering_proxy_faces_clients():
    services = compose()["services"]
    published = {n for n, s in services.items() if s.get("ports")}
    assert published == {"proxy"}
    mounts = {m.split(":")[0]: m.split(":")[1] for m in services["proxy"]["volumes"]}
    assert mounts["./nginx/sst.conf"] == "/etc/nginx/conf.d/default.conf"
    for source in mounts:
        if source.startswith("./") and source != "./certs":
            assert (DEPLOY / source).exists(), source
    # nginx reaches web:8000, where compose binds gunicorn (its config alone: 127.0.0.1).
    assert "server web:8000;" in (DEPLOY / "nginx" / "sst.conf").read_text()
    assert services["web"]["expose"] == ["8000"]
    settings = gunicorn_settings(services["web"]["command"])
    assert settings["bind"] == ["0.0.0.0:8000"]
    assert settings["worker_class"] == "sync"
    # The config file alone (systemd, or by hand) never binds where clients can reach it.
    alone = gunicorn_settings(["gunicorn", "--config", GUNICORN_CONF, "sst.wsgi:app"])
    assert alone["bind"] == ["127.0.0.1:8000"]


def test_compose_trusts_exactly_the_one_proxy_nginx_is():
    services = compose()["services"]
    for name in ("web", "worker", "migrate"):
        assert services[name]["environment"]["SST_PROXY_FIX_X_FOR"] == "1"
    conf = (DEPLOY / "nginx" / "sst.conf").read_text()
    # One hop trusted, so nginx must send one value, and never append the client's header.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in conf
    assert "$proxy_add_x_forwarded_for" not in conf
    assert "proxy_request_buffering on;" in conf and "proxy_buffering on;" in conf


def test_example_env_and_config_fit_compose_and_load(monkeypatch):
    env = env_file(DEPLOY / "sst.env.example")
    assert env["SST_ENV"] == "production"
    url = urlsplit(env["SST_DATABASE_URL"])
    assert (url.scheme, url.hostname, url.path.lstrip("/")) == (
        "mysql+pymysql", "db", env["MARIADB_DATABASE"])
    assert (url.username, url.password) == (env["MARIADB_USER"], env["MARIADB_PASSWORD"])
    assert urlsplit(env["SST_REDIS_URL"]).hostname == "redis"
    assert "sst.env" in compose()["services"]["db"]["env_file"]

    from sst.app import create_app

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SST_CONFIG", str(DEPLOY / "sst.toml.example"))
    monkeypatch.setenv("SST_DATABASE_URL", "sqlite://")  # loading only: no server here
    # As shipped, its placeholders are refused (a copied example must be filled in) ...
    from sst.errors import ConfigError

    with pytest.raises(ConfigError, match="placeholder"):
        create_app()
    # ... and once filled in, it loads.
    monkeypatch.setenv("SST_SECRET_KEY", "a-production-secret-0123456789abcdef")
    monkeypatch.setenv("SST_ADMIN_TOKEN", "a-private-admin-token-0123456789")
    monkeypatch.setenv("SST_WEB_WRITE_KEY", "sk_private_0123456789abcdef")
    app = create_app()
    assert set(app.extensions["sst"].sources) == {"sk_private_0123456789abcdef"}


# --- image ------------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    stages: list[list[tuple[str, str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((word.upper(), rest.strip()))
    return stages


def test_dockerfile_is_multi_stage_and_runs_as_non_root():
    import json

    stages = dockerfile_stages()
    assert len(stages) >= 2
    final = stages[-1]
    users = [rest for word, rest in final if word == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    # No build tools reach the final stage: it installs only the wheels stage 1 built.
    assert any(w == "COPY" and r.startswith("--from=build /wheels") for w, r in final)
    for word, rest in (i for stage in stages for i in stage):
        if word == "COPY" and not rest.startswith("--from"):
            *sources, _dest = rest.split()
            for source in sources:
                assert (ROOT / source).exists(), f"COPY {source}: not in the build context"
    entry = json.loads(dict(final)["ENTRYPOINT"])
    assert entry == ["/usr/local/bin/sst-entrypoint"]
    assert ("COPY", "deploy/entrypoint.sh /usr/local/bin/sst-entrypoint") in final
    assert ("COPY", f"deploy/gunicorn.conf.py {GUNICORN_CONF}") in final
    check_command(json.loads(dict(final)["CMD"]))
    mode = subprocess.run(["git", "-C", ROOT, "ls-files", "-s", "deploy/entrypoint.sh"],
                          capture_output=True, text=True).stdout.split()[0]
    assert mode == "100755", "deploy/entrypoint.sh must be executable in git"


def test_entrypoint_reads_file_secrets_and_runs_the_command(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("s3cret-from-a-file")
    done = subprocess.run(["sh", DEPLOY / "entrypoint.sh", "sh", "-c",
                           'echo "$SST_SECRET_KEY|${SST_SECRET_KEY_FILE:-unset}"'],
                          env={"PATH": "/usr/bin:/bin", "SST_SECRET_KEY_FILE": str(secret)},
                          capture_output=True, text=True, timeout=30)
    assert (done.returncode, done.stdout) == (0, "s3cret-from-a-file|unset\n")
    metrics = tmp_path / "metrics"
    done = subprocess.run(["sh", DEPLOY / "entrypoint.sh", "true"],
                          env={"PATH": "/usr/bin:/bin", "PROMETHEUS_MULTIPROC_DIR": str(metrics)},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0 and metrics.is_dir()
    done = subprocess.run(["sh", DEPLOY / "entrypoint.sh", "true"],
                          env={"PATH": "/usr/bin:/bin", "SST_SECRET_KEY_FILE": "/nonexistent"},
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert "SST_SECRET_KEY_FILE=/nonexistent is not readable" in done.stderr


# --- systemd ----------------------------------------------------------------------------------


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / "systemd" / name)
    return parser


@pytest.mark.parametrize("name", ["sst-migrate.service", "sst-web.service",
                                  "sst-worker@.service"])
def test_systemd_units_run_cli_commands_as_an_unprivileged_user(name):
    service = unit(name)["Service"]
    assert service["User"] == "sst"
    argv = shlex.split(service["ExecStart"])
    assert argv[0].startswith("/opt/sst/venv/bin/")
    check_command([Path(argv[0]).name, *argv[1:]])
    assert service["EnvironmentFile"] == "/etc/sst/sst.env"


def test_systemd_order_and_worker_stop():
    for name in ("sst-web.service", "sst-worker@.service"):
        assert "sst-migrate.service" in unit(name)["Unit"]["Requires"]
    assert unit("sst-migrate.service")["Service"]["Type"] == "oneshot"
    # RQ's scheduler is a child process: stopping must reach the whole group.
    assert unit("sst-worker@.service")["Service"]["KillMode"] == "control-group"
    web = (DEPLOY / "systemd" / "sst-web.service").read_text()
    assert "Environment=SST_BIND=127.0.0.1:8000" in web  # only nginx reaches it
    assert "Environment=SST_PROXY_FIX_X_FOR=1" in web


# --- nginx, for real --------------------------------------------------------------------------


def test_nginx_config_passes_nginx_t(tmp_path):
    conf = nginx.prepare(tmp_path / "nginx", "127.0.0.1:8000", free_port(), free_port())
    done = nginx.check(conf)
    assert done.returncode == 0, done.stderr
    assert "test is successful" in done.stderr


WRITE_KEY = "wk_deploy_test_0123456789"


@pytest.fixture
def proxied(tmp_path):
    """gunicorn (one sync worker, deploy/gunicorn.conf.py) behind nginx (the repo's config)."""
    (tmp_path / "sst.toml").write_text(
        f'[[source]]\nname = "web"\nwrite_key = "{WRITE_KEY}"\n'
        'origins = ["https://www.example.com"]\n')
    db_path = tmp_path / "sst.sqlite"
    venv_bin = Path(sys.executable).parent
    env = {"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "SST_CONFIG": str(tmp_path / "sst.toml"), "SST_DATABASE_URL": f"sqlite:///{db_path}",
           "SST_SECRET_KEY": "deploy-test-secret-0123456789", "SST_PROXY_FIX_X_FOR": "1",
           "SST_WEB_WORKERS": "1", "SST_BIND": f"127.0.0.1:{free_port()}",
           "SST_LOG_FORMAT": "off"}
    subprocess.run([venv_bin / "sst", "db", "upgrade"], env=env, check=True, timeout=120,
                   capture_output=True)
    web = start([venv_bin / "gunicorn", "--config", DEPLOY / "gunicorn.conf.py",
                 "sst.wsgi:app"], env=env, cwd=tmp_path, log=tmp_path / "gunicorn.log")
    https = free_port()
    conf = nginx.prepare(tmp_path / "nginx", env["SST_BIND"], free_port(), https)
    proxy = start(nginx.command(conf), log=tmp_path / "nginx.log")
    tls = ssl.create_default_context()
    tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    try:
        wait_http(f"http://{env['SST_BIND']}/healthz", web)
        wait_http(f"https://127.0.0.1:{https}/healthz", proxy, context=tls)
        yield {"gunicorn": env["SST_BIND"], "https": https, "tls": tls, "db": db_path}
    finally:
        stop(proxy)
        stop(web)


def test_nginx_passes_the_client_address_and_hides_a_forged_one(proxied):
    auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
    status, body = get(f"https://127.0.0.1:{proxied['https']}/v1/track", context=proxied["tls"],
                       data=b'{"event":"Proxied","userId":"u1","messageId":"px-1"}',
                       headers={"Authorization": f"Basic {auth}",
                                "Content-Type": "application/json",
                                "X-Forwarded-For": "203.0.113.9"})
    assert status == 200, body
    with sqlite3.connect(proxied["db"]) as conn:
        ip, request = conn.execute(
            "SELECT ip, request FROM events WHERE message_id = 'px-1'").fetchone()
    # A server call: the caller's address is kept on record, not as the visitor's (contract
    # §5); it is the address nginx saw, not the client's X-Forwarded-For.
    assert ip is None
    assert json.loads(request)["ip"] == "127.0.0.1"


def slow_client(host: str, port: int, tls=None) -> socket.socket:
    """A request whose head is complete and whose body has 1 of 100 bytes sent."""
    sock = socket.create_connection((host, port), timeout=10)
    if tls is not None:
        sock = tls.wrap_socket(sock, server_hostname=host)
    sock.sendall(b"POST /v1/track HTTP/1.1\r\nHost: t.example.com\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    return sock


def test_slow_clients_hold_nginx_not_the_sync_worker(proxied):
    """H3: four stalled uploads through nginx leave the one worker free; straight at
    gunicorn, they take it (the control that shows the probe can tell)."""
    host, port = proxied["gunicorn"].split(":")
    slow = [slow_client("127.0.0.1", proxied["https"], proxied["tls"]) for _ in range(4)]
    try:
        time.sleep(1)
        status, _ = get(f"https://127.0.0.1:{proxied['https']}/healthz", timeout=10,
                        context=proxied["tls"])
        assert status == 200
    finally:
        for sock in slow:
            sock.close()
    slow = [slow_client(host, int(port)) for _ in range(4)]
    try:
        time.sleep(1)
        with pytest.raises(OSError):  # a timeout: the only worker waits on a slow body
            get(f"http://{proxied['gunicorn']}/healthz", timeout=3)
    finally:
        for sock in slow:
            sock.close()


def test_a_config_error_stops_gunicorn_with_one_line_not_a_traceback(tmp_path):
    """What systemd's journal shows for a bad config: sst's one line, and gunicorn's master
    stopping with "App failed to load" (status 4, which sst-web.service does not restart)."""
    venv_bin = Path(sys.executable).parent
    env = {"PATH": f"{venv_bin}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "SST_DATABASE_URL": f"sqlite:///{tmp_path / 'sst.sqlite'}",
           "SST_SECRET_KEY": "deploy-test-secret-0123456789", "SST_ADMIN_TOKEN": "short",
           "SST_WEB_WORKERS": "1", "SST_BIND": f"127.0.0.1:{free_port()}"}
    done = subprocess.run([venv_bin / "gunicorn", "--config", DEPLOY / "gunicorn.conf.py",
                           "sst.wsgi:app"], env=env, cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stderr
    assert "sst: SST_ADMIN_TOKEN: too short (5 characters)" in done.stderr
    assert "App failed to load" in done.stderr
    assert "RestartPreventExitStatus=4" in (DEPLOY / "systemd" / "sst-web.service").read_text()
