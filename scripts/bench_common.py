"""Shared pieces of scripts/bench_ingest, bench_history and bench_e2e (not a benchmark itself).

The five destinations a real install forwards to (Meta, TikTok, GA4, Google Ads, a webhook)
with base_urls pointing at a local stub, the load average and per-process peak RSS that
every figure is printed with.
"""

from __future__ import annotations

import os
from pathlib import Path

DEST_ORDER = ("webhook", "meta", "tiktok", "ga4", "google_ads")
EVENT = "Order Completed"


def destinations_toml(stub_url: str, count: int) -> str:
    """[[destination]] tables for the first `count` of DEST_ORDER, all taking EVENT.

    count 1 is the webhook alone (one request per event, no batching); 5 adds the four ad
    platforms (Meta and TikTok batch up to 1,000 events a request)."""
    blocks = {
        "webhook": f'name = "hook"\nconnector = "webhook"\nurl = "{stub_url}/hook"\n'
                   'secret = "bench-secret"\n',
        "meta": f'name = "meta"\nconnector = "meta"\npixel_id = "1234567890"\n'
                f'access_token = "bench-meta-token"\nbase_url = "{stub_url}"\n',
        "tiktok": f'name = "tiktok"\nconnector = "tiktok"\npixel_code = "C0PIXEL"\n'
                  f'access_token = "bench-tt-token"\nbase_url = "{stub_url}"\n',
        "ga4": f'name = "ga4"\nconnector = "ga4"\nmeasurement_id = "G-BENCH"\n'
               f'api_secret = "bench-ga4-secret"\nbase_url = "{stub_url}"\n',
        "google_ads": f'name = "gads"\nconnector = "google_ads"\ncustomer_id = "123-456-7890"\n'
                      'client_id = "bench-client"\nclient_secret = "bench-client-secret"\n'
                      f'refresh_token = "bench-refresh"\ntoken_url = "{stub_url}/token"\n'
                      f'base_url = "{stub_url}"\n',
    }
    mapped = {"webhook": "*", "meta": "Purchase", "tiktok": "CompletePayment",
              "ga4": "purchase", "google_ads": "987654321"}
    out = []
    for kind in DEST_ORDER[:count]:
        out.append(f"[[destination]]\n{blocks[kind]}timeout = 5\n[destination.events]\n"
                   f'"{EVENT}" = "{mapped[kind]}"\n')
    return "\n".join(out)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def peak_rss_mib(pid: int) -> float | None:
    """VmHWM of a live process (its peak resident set), MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def process_tree(pid: int) -> list[int]:
    """pid and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                todo += [int(x) for x in (task / "children").read_text().split()]
            except OSError:
                pass
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def rss_report(named: dict[str, int]) -> str:
    """'name: pid a MiB, ...' peak RSS for each named process tree."""
    parts = []
    for name, pid in named.items():
        vals = [peak_rss_mib(p) for p in process_tree(pid)]
        vals = [v for v in vals if v is not None]
        if vals:
            parts.append(f"{name} " + "/".join(f"{v:.0f}" for v in vals))
    return "; ".join(parts) + " (MiB, peak RSS per process: master/workers...)"


def mariadbd_pid() -> int | None:
    for p in Path("/proc").glob("[0-9]*"):
        try:
            if (p / "comm").read_text().strip() in ("mariadbd", "mysqld"):
                return int(p.name)
        except OSError:
            pass
    return None


def cpu_count() -> int:
    return os.cpu_count() or 1
