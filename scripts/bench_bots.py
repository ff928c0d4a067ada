"""Cost of the bot verdict on hostile user agents (security review H1), in process.

    .venv/bin/python scripts/bench_bots.py

Prints seconds for: one 8,000-character user agent; 870 distinct 512-character user agents
judged as one request (one Budget); the same with no budget (crawlerdetect on every one).
"""

import time

from sst.ingest.bots import Budget, _full_verdict, is_bot_ua


def timed(fn):
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def main():
    print(f"8,000 x 'q', one request:        {timed(lambda: is_bot_ua('q' * 8000, Budget())):.3f} s")
    _full_verdict.cache_clear()
    budget = Budget()
    batch = [f"{i:05d}" + "a" * 507 for i in range(870)]
    print(f"870 distinct 512-char UAs, budget: {timed(lambda: [is_bot_ua(u, budget) for u in batch]):.3f} s")
    _full_verdict.cache_clear()
    print(f"870 distinct 512-char UAs, no budget: {timed(lambda: [is_bot_ua(u) for u in batch]):.3f} s")
    real = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 "
            "(KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/442.0.0.37.108;FBDV/iPhone14,5]")
    _full_verdict.cache_clear()
    n = 200
    per = timed(lambda: [is_bot_ua(real + str(i)) for i in range(n)]) / n
    print(f"a real in-app browser UA (uncached): {per * 1000:.2f} ms each")


if __name__ == "__main__":
    main()
