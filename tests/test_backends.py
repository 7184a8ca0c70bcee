"""RouteBackend selection: fallback order, least-busy, cool-off and probing back, client reuse."""
import pytest

from routing.config.table import DEFAULT_BACKEND, RouteBackend
from routing.lmstudio.backends import BackendPool

A, B, C = RouteBackend("a", "http://127.0.0.1:1"), RouteBackend("b", "http://127.0.0.1:2"), RouteBackend("c", "http://127.0.0.1:3")


class Clock:
    now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def pool():
    clock = Clock()
    p = BackendPool(RouteBackend(DEFAULT_BACKEND, "http://127.0.0.1:0"), lambda b: f"client-{b.name}",
                    lambda upstream: f"catalog-of-{upstream}", cool_off=10.0, clock=clock)
    p.sync([A, B, C])
    p.clock_ = clock
    return p


def names(states):
    return [s.name for s in states]


def test_fallback_keeps_the_alias_order(pool):
    assert names(pool.candidates(["b", "a", "c"])) == ["b", "a", "c"]


def test_unknown_backend_names_are_skipped(pool):
    assert names(pool.candidates(["x", "a"])) == ["a"]


def test_least_busy_prefers_fewest_open_requests_and_keeps_order_on_ties(pool):
    pool.states["a"].open_requests = 3
    pool.states["b"].open_requests = 1
    assert names(pool.candidates(["a", "b", "c"], "least-busy")) == ["c", "b", "a"]
    pool.states["c"].open_requests = 1
    assert names(pool.candidates(["a", "b", "c"], "least-busy")) == ["b", "c", "a"]


def test_a_failed_backend_goes_last_for_its_cool_off_then_is_probed_again(pool):
    pool.mark_down(pool.states["a"], "refused")
    assert names(pool.candidates(["a", "b"])) == ["b", "a"]
    assert pool.status()["a"] == {"url": A.url, "up": False, "open_requests": 0, "last_error": "refused"}
    pool.clock_.now += 10.5
    assert names(pool.candidates(["a", "b"])) == ["a", "b"]
    pool.mark_up(pool.states["a"])
    assert pool.status()["a"]["up"] is True


def test_when_all_are_down_the_soonest_back_is_tried_first(pool):
    pool.mark_down(pool.states["a"], "x")
    pool.clock_.now += 1
    pool.mark_down(pool.states["b"], "y")
    assert names(pool.candidates(["b", "a"])) == ["a", "b"]


def test_sync_reuses_unchanged_clients_and_retires_changed_ones(pool):
    before = pool.states["a"].upstream
    retired = pool.sync([A, RouteBackend("b", "http://127.0.0.1:9")])
    assert pool.states["a"].upstream is before
    assert sorted(retired) == ["client-b", "client-c"]
    assert pool.states["b"].backend.url == "http://127.0.0.1:9"
    assert list(pool.states) == [DEFAULT_BACKEND, "a", "b"]  # the default backend always stays


def test_the_secrets_snapshot_follows_the_backends_in_force(pool):
    pool.sync([RouteBackend("a", "http://user:url-password@127.0.0.1:1", api_key="key-of-a")])
    assert {"key-of-a", "url-password"} <= set(pool.secrets)
    pool.sync([A])
    assert "key-of-a" not in pool.secrets and "url-password" not in pool.secrets
