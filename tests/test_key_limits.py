"""The API keys' limits, in-process: max concurrent, requests per minute, tokens per UTC day, and the
429 each dialect gets."""
from datetime import datetime, timezone

import pytest

from routing.core.errors import KeyLimitReached, error_body
from routing.core.exchange import Exchange
from routing.proxy.key_limits import KeyLimits, seconds_to_utc_midnight
from routing.security.keys import OPERATOR_GRANT, KeyGrant


class Clock:
    def __init__(self):
        self.now = 1000.0
        self.day = datetime(2026, 12, 6, 23, 59, 0, tzinfo=timezone.utc)

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def limits(clock):
    return KeyLimits(clock=clock, utc_now=lambda: clock.day)


def exchange(name="ann"):
    return Exchange(api="ollama", endpoint="/api/chat", key_name=name)


def test_max_concurrent_refuses_the_next_until_one_ends(limits):
    grant = KeyGrant("ann", max_concurrent=2)
    first, second = exchange(), exchange()
    limits.admit(grant, first)
    limits.admit(grant, second)
    with pytest.raises(KeyLimitReached, match="2 requests open.*max concurrent 2") as info:
        limits.admit(grant, exchange())
    assert info.value.headers() == {"Retry-After": "1"}
    first.release()
    limits.admit(grant, exchange())


def test_requests_per_minute_is_a_sliding_minute_that_says_when_it_resets(limits, clock):
    grant = KeyGrant("ann", requests_per_minute=2)
    for _ in range(2):
        limits.admit(grant, exchange())
        clock.now += 10
    with pytest.raises(KeyLimitReached, match="requests per minute 2.*in 40 s") as info:
        limits.admit(grant, exchange())
    assert info.value.retry_after == 40
    clock.now += 40
    limits.admit(grant, exchange())


def test_tokens_per_day_count_finished_requests_until_utc_midnight(limits, clock):
    grant = KeyGrant("ann", tokens_per_day=100)
    done = exchange()
    limits.admit(grant, done)
    done.prompt_tokens, done.completion_tokens = 60, 40
    limits.observe(done)
    with pytest.raises(KeyLimitReached, match="used 100 tokens today.*00:00 UTC, in 60 s") as info:
        limits.admit(grant, exchange())
    assert info.value.retry_after == 60
    clock.day = datetime(2026, 12, 7, 0, 0, 1, tzinfo=timezone.utc)
    limits.admit(grant, exchange())


def test_a_request_admitted_is_never_cut_by_its_own_tokens(limits):
    grant = KeyGrant("ann", tokens_per_day=10)
    streaming = exchange()
    limits.admit(grant, streaming)  # admitted under the limit; what it uses only counts when it ends
    streaming.completion_tokens = 500
    limits.observe(streaming)
    with pytest.raises(KeyLimitReached):
        limits.admit(grant, exchange())


def test_keys_without_limits_and_the_operator_are_not_counted(limits):
    for _ in range(1000):
        limits.admit(OPERATOR_GRANT, exchange("operator"))
        limits.admit(KeyGrant("free"), exchange("free"))
        limits.admit(None, exchange(""))


def test_limits_are_per_key(limits):
    limits.admit(KeyGrant("ann", max_concurrent=1), exchange())
    limits.admit(KeyGrant("bob", max_concurrent=1), exchange("bob"))


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
