"""An installed sst (a wheel, not an editable checkout) in a fresh virtualenv serves
`sst.wsgi:app` with gunicorn from an empty folder (contract §1): migrations, the browser
tag and the admin templates come from the installed package's data, dependencies from
install_requires alone.

Speed without hiding anything: the wheel is built from a clean copy of the tree (no stale
build/ folder can add a file the package data would miss), the fresh venv has no system or
project site-packages, and install_requires are resolved once into a wheelhouse inside .venv
(keyed by the requirements) so later runs install offline in a few seconds."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from support.servers import free_port, get, log_of, start, stop, wait_http

ROOT = Path(__file__).resolve().parents[1]
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
WRITE_KEY = "wk_install_test_0123456789"
ADMIN_TOKEN = "admin-token-0123456789abcdef"


def run(argv, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                          timeout=kw.pop("timeout", 300), **kw)
    assert done.returncode == 0, f"{argv}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def build_wheel(tmp: Path) -> tuple[Path, str]:
    """The wheel `pip install .` would install, and the build's output."""
    tree = tmp / "tree"
    # The files git tracks or would track (what a clone has), not build/ or *.egg-info.
    listed = run(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others",
                  "--exclude-standard"]).stdout.split("\0")
    for name in filter(None, listed):
        src = ROOT / name
        if src.is_file() and not src.is_symlink():
            (tree / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tree / name)
    done = run([*PIP, "wheel", "--no-deps", "-w", tmp / "dist", tree])
    (wheel,) = (tmp / "dist").glob("sst-*.whl")
    return wheel, done.stdout + done.stderr


def requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        lines = zf.read(meta).decode().splitlines()
    return sorted(line.split(":", 1)[1].strip() for line in lines
                  if line.startswith("Requires-Dist:") and "extra ==" not in line)


def wheelhouse(wheel: Path) -> Path:
    """Wheels of install_requires (resolved from the package index the first time)."""
    key = hashlib.sha256("\n".join(requirements(wheel)).encode()).hexdigest()[:16]
    house = ROOT / ".venv" / "sst-wheelhouse" / key
    if not house.is_dir():
        partial = house.with_name(key + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        run([*PIP, "wheel", "-q", "-w", partial, wheel])
        for built in partial.glob("sst-*.whl"):
            built.unlink()
        partial.rename(house)
    return house


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    wheel, build_log = build_wheel(tmp)
    venv = tmp / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    # The project's pip installs into the fresh interpreter; --no-index: only the wheel
    # and its requirements' wheels, nothing from the project venv or the checkout.
    run([*PIP, "--python", venv / "bin" / "python", "install", "--no-compile", "--no-index",
         "--find-links", wheelhouse(wheel), wheel])
    return venv, wheel, build_log


def test_build_has_no_package_data_warnings(fresh_venv):
    _venv, wheel, build_log = fresh_venv
    assert "absent from the `packages` configuration" not in build_log
    names = set(zipfile.ZipFile(wheel).namelist())
    for data in ("sst/static/sst.js", "sst/ops/templates/admin/base.html",
                 "sst/migrations/script.py.mako", "sst/migrations/env.py", "sst/wsgi.py"):
        assert data in names


def test_installed_package_serves_from_an_empty_folder(fresh_venv, tmp_path):
    venv, _wheel, _log = fresh_venv
    empty = tmp_path / "empty"
    empty.mkdir()
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "sst.toml").write_text(
        f'[[source]]\nname = "web"\nwrite_key = "{WRITE_KEY}"\n'
        f'origins = ["https://www.example.com"]\n')
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8",
           "SST_CONFIG": str(conf / "sst.toml"),
           "SST_DATABASE_URL": f"sqlite:///{conf / 'sst.sqlite'}",
           "SST_SECRET_KEY": "install-test-secret-0123456789",
           "SST_ADMIN_TOKEN": ADMIN_TOKEN, "SST_LOG_FORMAT": "text"}

    where = run([venv / "bin" / "python", "-c", "import sst.wsgi, sys; print(sst.wsgi.__file__)"],
                env=env, cwd=empty).stdout.strip()
    assert where.startswith(str(venv)), where  # the installed copy, not the checkout
    upgraded = run([venv / "bin" / "sst", "db", "upgrade"], env=env, cwd=empty)
    assert "schema at revision" in upgraded.stdout

    port = free_port()
    server = start([venv / "bin" / "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}",
                    "sst.wsgi:app"], env=env, cwd=empty, log=tmp_path / "gunicorn.log")
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(base + "/healthz", server)
        status, body = get(base + "/healthz")
        assert (status, json.loads(body)["status"]) == (200, "ok")
        status, body = get(base + "/readyz")
        assert status == 200, body
        status, body = get(base + "/v1/sst.js")  # package data: static/
        assert status == 200
        assert body == (ROOT / "src" / "sst" / "static" / "sst.js").read_bytes()
        status, body = get(base + "/admin/", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert status == 200, body  # package data: ops/templates/admin/
        assert b"<html" in body.lower()
        auth = base64.b64encode(f"{WRITE_KEY}:".encode()).decode()
        status, body = get(base + "/v1/track", data=b'{"event":"Installed","userId":"u1"}',
                           headers={"Authorization": f"Basic {auth}",
                                    "Content-Type": "application/json"})
        assert (status, json.loads(body)) == (200, {"success": True})
    finally:
        stop(server)
    assert os.listdir(empty) == [], "serving wrote into the working folder"
    assert "Traceback" not in log_of(server)
