"""gunicorn settings for sst behind the buffering proxy (deploy/nginx/sst.conf).

Sync workers are right here only because nginx buffers whole requests and answers. A slow
client then holds an nginx connection and never a worker. Never expose this port to clients
directly (docs/security.md, "Production topology (H3)").
Environment: SST_BIND (default 127.0.0.1:8000: only a local proxy may reach sync workers;
compose binds 0.0.0.0:8000 inside its private network), SST_WEB_WORKERS (default 2 x CPUs + 1)."""

import os
import shutil

bind = os.environ.get("SST_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("SST_WEB_WORKERS") or 2 * (os.cpu_count() or 1) + 1)
worker_class = "sync"
timeout = 30
graceful_timeout = 30
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
# Heartbeat files on tmpfs: a container's overlay disk can stall them into false timeouts.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = None  # sst logs each request's outcome itself (JSON lines)
errorlog = "-"


def on_starting(server):
    """Empty the Prometheus multiprocess folder. A dead master's files would count twice."""
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)

# gunicorn 24+ opens a control socket under $HOME by default; sst does not use it, and the
# image's and units' service user has no writable home (an ERROR line at every start).
control_socket_disable = True
