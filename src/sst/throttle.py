"""Rate limits on a maintained library (`limits`, the engine of Flask-Limiter): sliding
window counters in Redis when configured (shared by every process), else in memory."""

from __future__ import annotations

import logging
import math
import time
from functools import cached_property

logger = logging.getLogger(__name__)


class Throttle:
    def __init__(self, storage_uri: str | None):
        self.storage_uri = storage_uri or "memory://"

    @cached_property
    def _limiter(self):
        from limits.storage import storage_from_string
        from limits.strategies import SlidingWindowCounterRateLimiter

        return SlidingWindowCounterRateLimiter(storage_from_string(self.storage_uri))

    def hit(self, rate: str | None, *identifiers: str) -> int | None:
        """Count one hit; None when allowed, else the seconds to wait (Retry-After).

        A limiter that cannot be reached lets the request through: losing rate limiting
        for a while is better than refusing every visitor.
        """
        if not rate:
            return None
        from limits import parse

        item = parse(rate)
        try:
            if self._limiter.hit(item, *identifiers):
                return None
            reset = self._limiter.get_window_stats(item, *identifiers).reset_time
        except Exception as exc:
            logger.warning("rate limiter unavailable: %s", exc.__class__.__name__)
            return None
        return max(1, math.ceil(reset - time.time()))
