"""Real server processes for deployment tests: free ports, process groups, HTTP waits."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, *, env=None, cwd=None, log: Path) -> subprocess.Popen:
    """Start a server in a process group of its own (gunicorn and nginx fork workers),
    its output in `log` so a failure can show it."""
    out = open(log, "ab")  # noqa: SIM115 (closed with the process by stop())
    proc = subprocess.Popen([str(a) for a in argv], env=env, cwd=cwd, stdout=out,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    proc.log_file = out
    proc.log_path = log
    return proc


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGTERM to the whole group, SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)
        except ProcessLookupError:
            pass
    proc.log_file.close()


def log_of(proc: subprocess.Popen) -> str:
    if not proc.log_file.closed:
        proc.log_file.flush()
    return Path(proc.log_path).read_text(errors="replace")[-4000:]


def get(url: str, timeout: float = 5.0, headers=None, data: bytes | None = None,
        context=None):
    """(status, body bytes) of one request; HTTP errors are answers, not exceptions."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 60.0, context=None) -> None:
    """Until `url` answers at all; fails with the server's log if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log_of(proc)}")
        try:
            get(url, timeout=2, context=context)
            return
        except (OSError, urllib.error.URLError):
            time.sleep(0.1)
    raise AssertionError(f"{url} did not answer in {timeout:.0f} s:\n{log_of(proc)}")
