"""The API keys' limit counts in Redis (`REDIS_URL`), shared by every instance of the proxy.

One Lua script per admitted request checks a key's three limits and counts the request, atomically, in
one round trip:

- open requests: a sorted set per key of request ids, each scored by the end of a lease of `LEASE`
  seconds; this process renews its open requests' leases every `LEASE / 3` seconds and removes each when
  it ends, so the requests of an instance that died stop counting within `LEASE` seconds;
- the last minute's requests: a sorted set per key, scored by Redis's clock (one clock for every
  instance);
- tokens per UTC day: a counter per key and day (`INCRBY` when an exchange ends), kept two days.

When Redis cannot be reached or fails, the counts are this process's (`LocalCounts`) for `RETRY` seconds
before Redis is tried again: said once per outage in the log, and each request counted so is on
`/metrics` (`proxy_key_limit_local_counts_total`). Tokens are always counted in this process too, so that
its own use of the day still counts while Redis is away.
"""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import date
from typing import Callable

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from routing.core.outage import OutageLog
from routing.proxy.key_limits import CONCURRENT, PER_DAY, PER_MINUTE, LocalCounts, Refusal, nothing
from routing.security.keys import KeyGrant

log = logging.getLogger(__name__)

PREFIX = "lmproxy:key:"
LEASE = 30  # seconds an open request counts without its process renewing it
RETRY = 5.0  # seconds the counts stay in this process after Redis failed
TIMEOUT = 0.5  # seconds for a connection or an answer: a limit check must never hang a request
DAY_KEPT = 2 * 86400

# KEYS: open, minute, tokens of the day. ARGV: request id, max concurrent, per minute, per day, lease
# (0: no such limit). Returns {"ok"} or {limit, count, seconds to wait}.
TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local most, per_minute, per_day, lease = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
if most > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  local open = redis.call('ZCARD', KEYS[1])
  if open >= most then return {'concurrent', open, 1} end
end
if per_minute > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - 60)
  local made = redis.call('ZCARD', KEYS[2])
  if made >= per_minute then
    local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
    return {'minute', made, math.max(1, math.ceil(tonumber(oldest[2]) + 60 - now))}
  end
end
if per_day > 0 then
  local used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if used >= per_day then return {'day', used, 0} end
end
if per_minute > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[1])
  redis.call('EXPIRE', KEYS[2], 61)
end
if most > 0 then
  redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
  redis.call('EXPIRE', KEYS[1], math.ceil(lease * 2))
end
return {'ok'}
"""
# KEYS: open sets; ARGV: lease, then one request id per key.
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local lease = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + lease, ARGV[i + 1])
  redis.call('EXPIRE', key, math.ceil(lease * 2))
end
return #KEYS
"""


def open_key(name: str) -> str:
    return f"{PREFIX}{name}:open"


def minute_key(name: str) -> str:
    return f"{PREFIX}{name}:minute"


def tokens_key(name: str, day: date) -> str:
    return f"{PREFIX}{name}:tokens:{day.isoformat()}"


class RedisCounts:
    """The counts in Redis at `url`; `local` counts while Redis is away; `counted_locally` is called
    for each request counted there instead."""

    def __init__(self, url: str, local: LocalCounts | None = None,
                 counted_locally: Callable[[], None] = lambda: None):
        self.local = local if local is not None else LocalCounts()
        self.counted_locally = counted_locally
        self.client = aioredis.Redis.from_url(url, socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT,
                                              retry=Retry(NoBackoff(), 0))
        self._take = self.client.register_script(TAKE)
        self._renew = self.client.register_script(RENEW)
        self._away_until = 0.0
        self._open: dict[str, str] = {}  # request id -> key name, for the requests this process holds
        self._renewal: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._outage = OutageLog(log)

    async def take(self, grant: KeyGrant, member: str, day: date) -> tuple[Refusal | None, Callable[[], None]]:
        if time.monotonic() < self._away_until:
            return self._take_locally(grant, day)
        try:
            name = grant.name
            answer = await self._take(keys=[open_key(name), minute_key(name), tokens_key(name, day)],
                                      args=[member, grant.max_concurrent or 0, grant.requests_per_minute or 0,
                                            grant.tokens_per_day or 0, LEASE])
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._away(exc)
            return self._take_locally(grant, day)
        self._outage.recovered("API key limits counted in Redis again")
        verdict = answer[0].decode() if isinstance(answer[0], bytes) else answer[0]
        if verdict in (CONCURRENT, PER_MINUTE, PER_DAY):
            return Refusal(verdict, int(answer[1]), int(answer[2])), nothing
        if not grant.max_concurrent:
            return None, nothing
        self._open[member] = grant.name
        self._keep_leases()
        return None, lambda: self._release(grant.name, member)

    def add_tokens(self, name: str, day: date, tokens: int):
        self.local.add_tokens(name, day, tokens)
        if time.monotonic() >= self._away_until:
            self._spawn(self._add_tokens(name, day, tokens))

    def status(self) -> str:
        return "this process (Redis is away)" if time.monotonic() < self._away_until else "redis"

    async def aclose(self):
        for task in (self._renewal, *self._tasks):
            if task is not None:
                task.cancel()
        await self.client.aclose()

    # --- inside ----------------------------------------------------------------------------------

    def _take_locally(self, grant: KeyGrant, day: date):
        self.counted_locally()
        return self.local.take_now(grant, day)

    def _away(self, exc: BaseException):
        self._away_until = time.monotonic() + RETRY
        self._outage.failed("Redis unreachable or failing for the API key limits (%s): counting in this "
                            "process, retrying every %g s", exc, RETRY)

    def _release(self, name: str, member: str):
        self._open.pop(member, None)
        self._spawn(self._forget(name, member))

    async def _forget(self, name: str, member: str):
        try:
            await self.client.zrem(open_key(name), member)
        except (RedisError, OSError, asyncio.TimeoutError):
            pass  # its lease ends within LEASE seconds

    async def _add_tokens(self, name: str, day: date, tokens: int):
        key = tokens_key(name, day)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                await pipe.incrby(key, tokens).expire(key, DAY_KEPT).execute()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self._away(exc)

    def _keep_leases(self):
        if self._renewal is None or self._renewal.done():
            self._renewal = asyncio.get_running_loop().create_task(self._renew_leases())

    async def _renew_leases(self):
        """While this process holds open requests: renew their leases every LEASE / 3 seconds."""
        while self._open:
            await asyncio.sleep(LEASE / 3)
            held = list(self._open.items())
            if not held:
                return
            try:
                await self._renew(keys=[open_key(name) for _, name in held],
                                  args=[LEASE, *(member for member, _ in held)])
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self._away(exc)

    def _spawn(self, work):
        try:
            task = asyncio.get_running_loop().create_task(work)
        except RuntimeError:  # no event loop here (a command): counted in this process only
            work.close()
            return
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
