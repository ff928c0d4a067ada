"""Kept for one release: RQ stores the dotted path `sst.jobs.deliver` of jobs already queued
in Redis, and a worker resolves that path when it runs them. New jobs use
`sst.delivery.worker.deliver`."""

from sst.delivery.worker import deliver

__all__ = ["deliver"]
