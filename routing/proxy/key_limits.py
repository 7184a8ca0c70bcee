"""The API keys' limits, counted in this process: requests open at once, requests in the last minute,
tokens per UTC day.

A model request is admitted (`KeyLimits.admit`, in the pipeline, before LM Studio is asked) or refused
with a 429 that says which limit and when it resets (`KeyLimitReached`, with Retry-After). Nothing is
ever cut once admitted: a stream that carries a key over its daily tokens ends normally, and the next
request is refused. Tokens are counted when an exchange is over (prompt + completion, as LM Studio
reported them), through the observers. Counts live in this process's memory: with several instances
each counts its own (sharing them through REDIS_URL is not built yet).
"""
from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from datetime import datetime, timedelta, timezone

from routing.core.errors import KeyLimitReached
from routing.core.exchange import Exchange
from routing.security.keys import KeyGrant

MINUTE = 60.0


def seconds_to_utc_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return math.ceil((tomorrow - now).total_seconds())


class KeyLimits:
    """Per key name: open requests, the times of the last minute's requests, and (UTC day, tokens)."""

    def __init__(self, clock=time.monotonic, utc_now=lambda: datetime.now(timezone.utc)):
        self._clock, self._utc_now = clock, utc_now
        self._open: dict[str, int] = defaultdict(int)
        self._recent: dict[str, deque] = defaultdict(deque)
        self._tokens: dict[str, tuple] = {}

    def admit(self, grant: KeyGrant | None, exchange: Exchange):
        """Count `exchange` against its key's limits, or raise KeyLimitReached; the open request is
        released when the exchange is over."""
        if grant is None or not (grant.max_concurrent or grant.requests_per_minute or grant.tokens_per_day):
            return
        name, now = grant.name, self._clock()
        if grant.max_concurrent and self._open[name] >= grant.max_concurrent:
            raise KeyLimitReached(f"the API key {name!r} has {self._open[name]} requests open, its limit "
                                  f"(max concurrent {grant.max_concurrent}); retry when one ends", 1)
        recent = self._recent[name]
        while recent and recent[0] <= now - MINUTE:
            recent.popleft()
        if grant.requests_per_minute and len(recent) >= grant.requests_per_minute:
            wait = math.ceil(recent[0] + MINUTE - now)
            raise KeyLimitReached(f"the API key {name!r} made {len(recent)} requests in the last minute, its "
                                  f"limit (requests per minute {grant.requests_per_minute}); the next is "
                                  f"allowed in {wait} s", wait)
        if grant.tokens_per_day and self.tokens_today(name) >= grant.tokens_per_day:
            wait = seconds_to_utc_midnight(self._utc_now())
            raise KeyLimitReached(f"the API key {name!r} used {self.tokens_today(name)} tokens today, its limit "
                                  f"(tokens per day {grant.tokens_per_day}); it resets at 00:00 UTC, in "
                                  f"{wait} s", wait)
        recent.append(now)
        self._open[name] += 1
        exchange.on_release(lambda: self._release(name))

    def tokens_today(self, name: str) -> int:
        day, tokens = self._tokens.get(name, (None, 0))
        return tokens if day == self._utc_now().date() else 0

    def observe(self, exchange: Exchange):
        """An observer: a finished exchange's tokens count against its key for the UTC day."""
        used = (exchange.prompt_tokens or 0) + (exchange.completion_tokens or 0)
        if exchange.key_name and used:
            self._tokens[exchange.key_name] = (self._utc_now().date(),
                                               self.tokens_today(exchange.key_name) + used)

    def _release(self, name: str):
        self._open[name] -= 1
        if not self._open[name]:
            del self._open[name]
