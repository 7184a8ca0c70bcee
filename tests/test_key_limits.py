"""The API keys' limits: max concurrent, requests per minute, tokens per UTC day, and the 429 each dialect
gets; counted in this process (`LocalCounts`) and in a real redis-server (`RedisCounts`), shared by two
"instances", surviving a dead one's open requests and Redis going away."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from routing.core.errors import KeyLimitReached, error_body
from routing.core.exchange import Exchange
from routing.proxy import shared_counts
from routing.proxy.key_limits import KeyLimits, LocalCounts, seconds_to_utc_midnight
from routing.proxy.shared_counts import RedisCounts
from routing.security.keys import OPERATOR_GRANT, KeyGrant
from tests.conftest import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Clock:
    def __init__(self):
        self.now = 1000.0
        self.day = datetime(2026, 12, 6, 23, 59, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture(scope="module")
def redis_server():
    server = RedisServer()
    server.start()
    yield server
    server.stop()


async def flush(url: str):
    counts = RedisCounts(url)
    await counts.client.flushdb()
    await counts.aclose()


@pytest.fixture(params=["local", "redis"])
async def where(request, redis_server):
    """Where the counts live; each test starts from none."""
    if request.param == "redis":
        await flush(redis_server.url)
    return request.param


def make_limits(where: str, clock: Clock, url: str, local_counted: list | None = None) -> KeyLimits:
    if where == "local":
        return KeyLimits(LocalCounts(clock), utc_now=lambda: clock.day)
    counted = (lambda: local_counted.append(1)) if local_counted is not None else (lambda: None)
    return KeyLimits(RedisCounts(url, LocalCounts(clock), counted), utc_now=lambda: clock.day)


@pytest.fixture
async def limits(where, clock, redis_server):
    limits = make_limits(where, clock, redis_server.url)
    yield limits
    await limits.aclose()


def exchange(grant: KeyGrant | None) -> Exchange:
    return Exchange(api="ollama", endpoint="/api/chat", key_name=grant.name if grant else "", grant=grant)


async def test_max_concurrent_refuses_the_next_until_one_ends(limits):
    grant = KeyGrant("ann", max_concurrent=2)
    first, second = exchange(grant), exchange(grant)
    await limits.admit(first)
    await limits.admit(second)
    with pytest.raises(KeyLimitReached, match="2 requests open.*max concurrent 2") as info:
        await limits.admit(exchange(grant))
    assert info.value.headers() == {"Retry-After": "1"}
    first.release()
    await _settled()
    await limits.admit(exchange(grant))


async def test_requests_per_minute_says_when_the_next_is_allowed(limits, where, clock):
    grant = KeyGrant("ann", requests_per_minute=2)
    for _ in range(2):
        await limits.admit(exchange(grant))
        clock.now += 10
    with pytest.raises(KeyLimitReached, match="made 2 requests in the last minute.*requests per minute 2") as info:
        await limits.admit(exchange(grant))
    if where == "redis":  # Redis's own clock: the first request was just now
        assert 59 <= info.value.retry_after <= 60
        return
    assert info.value.retry_after == 40 and "in 40 s" in info.value.message
    clock.now += 40  # a sliding minute: the first request has left it
    await limits.admit(exchange(grant))


async def test_tokens_per_day_count_finished_requests_until_utc_midnight(limits, clock):
    grant = KeyGrant("ann", tokens_per_day=100)
    done = exchange(grant)
    await limits.admit(done)
    done.prompt_tokens, done.completion_tokens = 60, 40
    limits.observe(done)
    await _settled()
    with pytest.raises(KeyLimitReached, match="used 100 tokens today.*00:00 UTC, in 60 s") as info:
        await limits.admit(exchange(grant))
    assert info.value.retry_after == 60
    clock.day = datetime(2026, 12, 7, 0, 0, 1, tzinfo=timezone.utc)
    await limits.admit(exchange(grant))


async def test_a_request_admitted_is_never_cut_by_its_own_tokens(limits):
    grant = KeyGrant("ann", tokens_per_day=10)
    streaming = exchange(grant)
    await limits.admit(streaming)  # admitted under the limit; what it uses only counts when it ends
    streaming.completion_tokens = 500
    limits.observe(streaming)
    await _settled()
    with pytest.raises(KeyLimitReached):
        await limits.admit(exchange(grant))


async def test_keys_without_limits_and_the_operator_are_not_counted(limits):
    for _ in range(1000):
        for grant in (OPERATOR_GRANT, KeyGrant("free"), None):
            await limits.admit(exchange(grant))
    assert limits.counts.status() in {"this process", "redis"}


async def test_limits_are_per_key(limits):
    await limits.admit(exchange(KeyGrant("ann", max_concurrent=1)))
    await limits.admit(exchange(KeyGrant("bob", max_concurrent=1)))


async def test_two_instances_on_one_redis_share_every_count(redis_server, clock):
    await flush(redis_server.url)
    one, two = (make_limits("redis", clock, redis_server.url) for _ in range(2))
    try:
        minute = KeyGrant("ann", requests_per_minute=2)
        await one.admit(exchange(minute))
        await two.admit(exchange(minute))
        with pytest.raises(KeyLimitReached, match="made 2 requests"):
            await one.admit(exchange(minute))

        open_one = KeyGrant("bob", max_concurrent=1)
        held = exchange(open_one)
        await one.admit(held)
        with pytest.raises(KeyLimitReached, match="1 requests open"):
            await two.admit(exchange(open_one))
        held.release()
        await _settled()
        await two.admit(exchange(open_one))

        daily = KeyGrant("cy", tokens_per_day=50)
        done = exchange(daily)
        await one.admit(done)
        done.prompt_tokens = 50
        one.observe(done)
        await _settled()
        with pytest.raises(KeyLimitReached, match="used 50 tokens today"):
            await two.admit(exchange(daily))
    finally:
        await one.aclose()
        await two.aclose()


async def test_the_open_requests_of_an_instance_that_died_stop_counting_after_their_lease(
        redis_server, clock, monkeypatch):
    await flush(redis_server.url)
    monkeypatch.setattr(shared_counts, "LEASE", 1)
    grant = KeyGrant("ann", max_concurrent=1)
    dead, alive = (make_limits("redis", clock, redis_server.url) for _ in range(2))
    await dead.admit(exchange(grant))
    await dead.aclose()  # never released, its leases never renewed
    with pytest.raises(KeyLimitReached):
        await alive.admit(exchange(grant))
    await _settled(1.2)
    await alive.admit(exchange(grant))
    await alive.aclose()


async def test_a_long_request_keeps_its_count_past_the_lease(redis_server, clock, monkeypatch):
    await flush(redis_server.url)
    monkeypatch.setattr(shared_counts, "LEASE", 0.6)  # renewed every 0.2 s
    grant = KeyGrant("ann", max_concurrent=1)
    holder, other = (make_limits("redis", clock, redis_server.url) for _ in range(2))
    await holder.admit(exchange(grant))
    await _settled(1.5)
    with pytest.raises(KeyLimitReached):
        await other.admit(exchange(grant))
    await holder.aclose()
    await other.aclose()


async def test_while_redis_is_away_each_process_counts_its_own_and_says_so(clock, monkeypatch, caplog):
    server = RedisServer()
    server.start()
    monkeypatch.setattr(shared_counts, "RETRY", 0.2)
    counted: list[int] = []
    limits = make_limits("redis", clock, server.url, counted)
    grant = KeyGrant("ann", requests_per_minute=1)
    try:
        server.stop()
        await limits.admit(exchange(grant))  # Redis away: counted here, not refused, not hung
        with pytest.raises(KeyLimitReached):
            await limits.admit(exchange(grant))
        assert len(counted) == 2 and "Redis is away" in limits.counts.status()
        assert sum("counting in this process" in r.message for r in caplog.records) == 1
        server.start()
        await _settled(0.3)
        other = KeyGrant("bob", requests_per_minute=1)
        await limits.admit(exchange(other))
        assert limits.counts.status() == "redis" and len(counted) == 2
        assert any("counted in Redis again" in r.message for r in caplog.records)
    finally:
        await limits.aclose()
        server.stop()


@pytest.mark.parametrize("dialect, expected", [
    ("ollama", {"error": "over"}),
    ("openai", {"error": {"message": "over", "type": "rate_limit_error", "param": None,
                          "code": "rate_limit_exceeded"}}),
    ("anthropic", {"type": "error", "error": {"type": "rate_limit_error", "message": "over"}}),
])
def test_a_limit_is_a_429_in_each_dialects_shape(dialect, expected):
    error = KeyLimitReached("over", 5)
    assert error.status == 429 and error_body(error, dialect) == expected


def test_seconds_to_utc_midnight():
    assert seconds_to_utc_midnight(datetime(2026, 1, 1, 23, 0, tzinfo=timezone.utc)) == 3600


async def _settled(seconds: float = 0.05):
    """Let the background writes (a release, the tokens) reach Redis."""
    import asyncio

    await asyncio.sleep(seconds)
