"""Rate limits on a maintained library (`limits`, the engine of Flask-Limiter): sliding
window counters in Redis when configured (shared by every process), else in memory."""

from __future__ import annotations

import logging
import math
import time
from functools import cached_property

from sst.errors import SstError

logger = logging.getLogger(__name__)

# The request path must not hang on a Redis that stopped answering: redis-py waits forever
# by default (socket_timeout=None), and a blackholed host takes the OS connect timeout.
REDIS_OPTIONS = {"socket_timeout": 1.0, "socket_connect_timeout": 1.0}


class ThrottleUnavailableError(SstError):
    """The limiter's storage cannot be reached and the caller asked not to fail open."""


class Throttle:
    def __init__(self, storage_uri: str | None, key_prefix: str | None = None):
        self.storage_uri = storage_uri or "memory://"
        self.key_prefix = key_prefix  # Redis only; None keeps the library's "LIMITS"

    @cached_property
    def _limiter(self):
        from limits.storage import storage_from_string
        from limits.strategies import SlidingWindowCounterRateLimiter

        options = {}
        if self.storage_uri.startswith("redis"):
            options.update(REDIS_OPTIONS)
            if self.key_prefix:
                options["key_prefix"] = self.key_prefix
        return SlidingWindowCounterRateLimiter(storage_from_string(self.storage_uri, **options))

    def hit(self, rate: str | None, *identifiers: str, fail_open: bool = True,
            cost: int = 1) -> int | None:
        """Count `cost` hits; None when allowed, else the seconds to wait (Retry-After).

        A limiter that cannot be reached lets the request through: losing rate limiting
        for a while is better than refusing every visitor. Where a request costs money
        (an SMS), pass ``fail_open=False`` to get ThrottleUnavailableError instead.
        """
        if not rate:
            return None
        from limits import parse

        item = parse(rate)
        try:
            if self._limiter.hit(item, *identifiers, cost=max(1, cost)):
                return None
            reset = self._limiter.get_window_stats(item, *identifiers).reset_time
        except Exception as exc:
            logger.warning("rate limiter unavailable: %s", exc.__class__.__name__)
            if not fail_open:
                raise ThrottleUnavailableError(exc.__class__.__name__) from None
            return None
        return max(1, math.ceil(reset - time.time()))
