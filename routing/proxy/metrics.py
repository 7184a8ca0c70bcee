"""Prometheus metrics for `/metrics`, fed by the one hand-off point for finished exchanges.

`Metrics.observe` is the first observer of the application's state; the open-streams gauge is
moved by the relay, the one place a stream lives. The metrics live in their own registry so that only
the proxy's own figures are served (and tests can read them without the process defaults).
"""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from routing.core.exchange import Exchange

# Statuses that mean "LM Studio failed us", as opposed to a bad request from the client:
# 409 model not loaded (JIT off), 502 unreachable or failed, 503 not ready, 504 too slow.
UPSTREAM_ERROR_STATUSES = frozenset({409, 502, 503, 504})
NO_ALIAS = "-"   # a pass-through model name (no alias), or a request that failed before resolving


class Metrics:
    """The proxy's own figures, in a registry of their own (only they are served, and each application
    state, a test's too, starts from zero)."""

    def __init__(self):
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("proxy_requests", "Proxied model requests, by how they ended.",
                                ["endpoint", "alias", "status", "outcome"], registry=registry)
        self.latency = Histogram("proxy_request_duration_seconds", "Time from request to the end of the answer.",
                                 ["endpoint"], registry=registry,
                                 buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, float("inf")))
        self.ttft = Histogram("proxy_time_to_first_token_seconds", "Time from request to the first token.",
                              ["endpoint"], registry=registry,
                              buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, float("inf")))
        self.tokens = Counter("proxy_tokens", "Tokens reported by LM Studio.", ["endpoint", "alias", "kind"],
                              registry=registry)
        self.upstream_errors = Counter("proxy_upstream_errors", "Requests that failed because of LM Studio.",
                                       ["endpoint", "status"], registry=registry)
        self.refused = Counter("proxy_refused", "Requests refused before a view: host or origin not allowed "
                               "(400, 403), no valid API key (401), too large (413), too slow (408).", ["status"],
                               registry=registry)
        self.key_limit_local_counts = Counter(
            "proxy_key_limit_local_counts", "Requests whose API key limits were counted in this process "
            "because Redis (REDIS_URL) was away.", registry=registry)
        self.open_streams = Gauge("proxy_open_streams", "Streamed answers being relayed right now.",
                                  registry=registry)

    def observe(self, exchange: Exchange):
        """Count one finished exchange (an observer: constant time, never blocks)."""
        endpoint, alias = exchange.endpoint, exchange.alias or NO_ALIAS
        self.requests.labels(endpoint, alias, str(exchange.status), exchange.outcome).inc()
        self.latency.labels(endpoint).observe(exchange.timing.total_ns() / 1e9)
        if exchange.timing.first_token is not None:
            self.ttft.labels(endpoint).observe(exchange.timing.first_token_ns() / 1e9)
        for kind, count in (("prompt", exchange.prompt_tokens), ("completion", exchange.completion_tokens)):
            if count:
                self.tokens.labels(endpoint, alias, kind).inc(count)
        if exchange.status in UPSTREAM_ERROR_STATUSES:
            self.upstream_errors.labels(endpoint, str(exchange.status)).inc()
