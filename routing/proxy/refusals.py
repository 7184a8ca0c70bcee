"""Requests refused before they reach a view — a host or origin not allowed, no valid API key, a body too
large, a client too slow — counted on `/metrics` by status (`proxy_refused_total`), and those without a
valid API key said in the log: the first at once, then at most one line a minute with how many came
since (a client retrying a wrong key, or somebody trying keys, is seen without a line per attempt). The
line names the method, path and client address, never the key.

They leave no history row: nothing about them is worth keeping per request, and a client without a key
could otherwise push everybody's real requests out of the history's row cap.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Callable

from prometheus_client import Counter

from routing.core.errors import ProxyError

log = logging.getLogger(__name__)
INTERVAL = 60.0  # seconds between two log lines about refused keys


class Refusals:
    def __init__(self, counter: Counter, clock: Callable[[], float] = time.monotonic, interval: float = INTERVAL):
        self.counter, self.clock, self.interval = counter, clock, interval
        self._said, self._since = -math.inf, 0

    def note(self, problem: ProxyError, method: str, path: str, client: str):
        """Count one refusal (and say it, for a missing or wrong key, as above)."""
        self.counter.labels(str(problem.status)).inc()
        if problem.status != 401:
            return
        self._since += 1
        now = self.clock()
        if now - self._said < self.interval:
            return
        log.warning("refused %d request(s) without a valid API key%s; the latest: %s %s from %s", self._since,
                    "" if self._said == -math.inf else f" in the last {now - self._said:.0f} s", method, path,
                    client or "an unknown address")
        self._said, self._since = now, 0
