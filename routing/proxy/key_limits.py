"""The API keys' limits: requests open at once, requests in the last minute, tokens per UTC day.

A model request is admitted (`KeyLimits.admit`, in the pipeline, before LM Studio is asked) or refused
with a 429 that says which limit and when it resets (`KeyLimitReached`, with Retry-After). Nothing is
ever cut once admitted: a stream that carries a key over its daily tokens ends normally, and the next
request is refused. Tokens are counted when an exchange is over (prompt + completion, as LM Studio
reported them), through the observers.

Where the counts live: `LocalCounts`, this process's memory (each instance counts its own), or with
`REDIS_URL` `routing.proxy.shared_counts.RedisCounts`, shared by every instance. Both answer `take`
(check the limits and count the request, or say which limit refuses it) and `add_tokens`.
"""
from __future__ import annotations

import math
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Callable

from routing.core.errors import KeyLimitReached
from routing.core.exchange import Exchange
from routing.security.keys import KeyGrant

MINUTE = 60.0
CONCURRENT, PER_MINUTE, PER_DAY = "concurrent", "minute", "day"


def seconds_to_utc_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return math.ceil((tomorrow - now).total_seconds())


def limited(grant: KeyGrant | None) -> bool:
    return grant is not None and bool(grant.max_concurrent or grant.requests_per_minute or grant.tokens_per_day)


@dataclass(frozen=True)
class Refusal:
    """Which limit refuses a request, the count that reached it, and the seconds until the next request
    may pass (for the minute; the day's is worked out from the UTC clock)."""

    limit: str
    count: int
    wait: int = 1


def nothing():
    """The release of a request that holds no count."""


class LocalCounts:
    """Per key name, in this process: open requests, the times of the last minute's requests, and
    (UTC day, tokens)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._open: dict[str, int] = defaultdict(int)
        self._recent: dict[str, deque] = defaultdict(deque)
        self._tokens: dict[str, tuple[date, int]] = {}

    async def take(self, grant: KeyGrant, member: str, day: date) -> tuple[Refusal | None, Callable[[], None]]:
        return self.take_now(grant, day)

    def take_now(self, grant: KeyGrant, day: date) -> tuple[Refusal | None, Callable[[], None]]:
        """Check `grant`'s limits and count one request; (the refusal, or None; the request's release)."""
        name, now = grant.name, self._clock()
        if grant.max_concurrent and self._open[name] >= grant.max_concurrent:
            return Refusal(CONCURRENT, self._open[name]), nothing
        recent = self._recent[name] if grant.requests_per_minute else None
        if recent is not None:
            while recent and recent[0] <= now - MINUTE:
                recent.popleft()
            if len(recent) >= grant.requests_per_minute:
                return Refusal(PER_MINUTE, len(recent), max(1, math.ceil(recent[0] + MINUTE - now))), nothing
        used = self.tokens(name, day)
        if grant.tokens_per_day and used >= grant.tokens_per_day:
            return Refusal(PER_DAY, used), nothing
        if recent is not None:
            recent.append(now)
        if not grant.max_concurrent:
            return None, nothing
        self._open[name] += 1
        return None, lambda: self._release(name)

    def tokens(self, name: str, day: date) -> int:
        counted, tokens = self._tokens.get(name, (None, 0))
        return tokens if counted == day else 0

    def add_tokens(self, name: str, day: date, tokens: int):
        self._tokens[name] = (day, self.tokens(name, day) + tokens)

    def status(self) -> str:
        return "this process"

    async def aclose(self):
        pass

    def _release(self, name: str):
        self._open[name] -= 1
        if not self._open[name]:
            del self._open[name]


def refusal_message(grant: KeyGrant, refusal: Refusal, wait: int) -> str:
    name = grant.name
    if refusal.limit == CONCURRENT:
        return (f"the API key {name!r} has {refusal.count} requests open, its limit (max concurrent "
                f"{grant.max_concurrent}); retry when one ends")
    if refusal.limit == PER_MINUTE:
        return (f"the API key {name!r} made {refusal.count} requests in the last minute, its limit "
                f"(requests per minute {grant.requests_per_minute}); the next is allowed in {wait} s")
    return (f"the API key {name!r} used {refusal.count} tokens today, its limit (tokens per day "
            f"{grant.tokens_per_day}); it resets at 00:00 UTC, in {wait} s")


class KeyLimits:
    """The limits of the keys that have any, counted in `counts` (this process's memory by default)."""

    def __init__(self, counts: LocalCounts | None = None,
                 utc_now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)):
        self.counts = counts if counts is not None else LocalCounts()
        self._utc_now = utc_now

    async def admit(self, exchange: Exchange):
        """Count `exchange` against its key's limits, or raise KeyLimitReached; the request's count is
        given back when the exchange is over."""
        grant = exchange.grant
        if not limited(grant):
            return
        now = self._utc_now()
        refusal, release = await self.counts.take(grant, exchange.id, now.date())
        if refusal is not None:
            wait = seconds_to_utc_midnight(now) if refusal.limit == PER_DAY else refusal.wait
            raise KeyLimitReached(refusal_message(grant, refusal, wait), wait)
        exchange.on_release(release)

    def observe(self, exchange: Exchange):
        """An observer: a finished exchange's tokens count against its key for the UTC day (keys with a
        daily limit only)."""
        used, grant = (exchange.prompt_tokens or 0) + (exchange.completion_tokens or 0), exchange.grant
        if used and grant is not None and grant.tokens_per_day:
            self.counts.add_tokens(grant.name, self._utc_now().date(), used)

    def status(self) -> dict:
        """For /ready: where the counts live."""
        return {"key_limits": self.counts.status()}

    async def aclose(self):
        await self.counts.aclose()
