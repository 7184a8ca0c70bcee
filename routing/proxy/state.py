"""The application's state: everything a request shares with the others, made once and handed in.

`build(settings)` makes it: the route registry, the pool of LM Studio backends (each with its client and
model catalog), admission to the upstream slots, the instance loader, the download jobs, the metrics and
the observers of finished exchanges (the request log's writer among them, from `EXCHANGE_OBSERVERS`) and
the API keys in force.
The server builds it at start-up (`shimsite/asgi.py`); views and commands reach it through `current()`,
and hand its parts down to the layers below, which never look it up themselves. Tests build their own
and `install` it for as long as they need it.
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Callable, Iterator

import httpx
from django.conf import settings
from django.utils.module_loading import import_string

from routing.config.registry import RouteRegistry
from routing.config.table import DEFAULT_BACKEND, RouteBackend
from routing.core.errors import ProxyError
from routing.lmstudio.admission import POOL_RESERVE, Admission
from routing.lmstudio.backends import BackendPool
from routing.lmstudio.catalog import ModelCatalog
from routing.lmstudio.client import Upstream
from routing.lmstudio.downloads import RunningJobs
from routing.lmstudio.instances import InstanceLoader
from routing.proxy.key_limits import KeyLimits, LocalCounts
from routing.proxy.keystore import KeyStore
from routing.proxy.metrics import Metrics
from routing.proxy.observers import Observers
from routing.proxy.refusals import Refusals
from routing.proxy.shared_counts import RedisCounts

log = logging.getLogger(__name__)


@dataclass
class AppState:
    registry: RouteRegistry
    pool: BackendPool
    admission: Admission
    loader: InstanceLoader
    downloads: RunningJobs
    metrics: Metrics
    observers: Observers
    keys: KeyStore  # the API keys in force, a snapshot the head gate consults (routing.proxy.keystore)
    limits: KeyLimits  # their limits' counts, in Redis with REDIS_URL (routing.proxy.key_limits)
    refusals: Refusals  # requests refused before a view, counted and (a missing key) said in the log
    # Set when a graceful stop's grace period is over: streams still open end with it, as the dialect's
    # error event, at their next batch (routing.proxy.relay; shimsite/shutdown.py sets it).
    stopping: ProxyError | None = None

    async def aclose(self):
        """Close every backend's connections and Redis's, and stop the key store's thread."""
        self.keys.close()
        await self.limits.aclose()
        await self.pool.aclose()

    def close_observers(self):
        """Let observers that hold work (the request log's queue) finish it (at exit)."""
        for observer in self.observers:
            close = getattr(observer, "close", None)
            if close is not None:
                close()


def build(settings, *, transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
          observers: list[str] | None = None, keys: KeyStore | None = None) -> AppState:
    """The application's state from Django's settings. `transport` makes each LM Studio client's
    transport (tests inject one; the default is aiohttp's pool); `observers` replaces the dotted paths of
    `settings.EXCHANGE_OBSERVERS` (factories called with the new state, each returning an observer); `keys`
replaces the store of API keys read from the database."""

    def make_upstream(backend: RouteBackend) -> Upstream:
        return Upstream(backend.url, api_key=backend.api_key, connect_timeout=settings.UPSTREAM_CONNECT_TIMEOUT,
                        read_timeout=settings.UPSTREAM_READ_TIMEOUT, pool_timeout=settings.UPSTREAM_POOL_TIMEOUT,
                        max_connections=settings.UPSTREAM_MAX_CONNECTIONS + POOL_RESERVE,
                        transport=transport() if transport else None)

    pool = BackendPool(RouteBackend(DEFAULT_BACKEND, settings.LMSTUDIO_URL, settings.LMSTUDIO_API_KEY),
                       make_upstream, lambda upstream: ModelCatalog(upstream, ttl=settings.MODEL_LIST_TTL),
                       cool_off=settings.BACKEND_COOL_OFF, operator_secrets=(settings.API_KEY,))
    metrics = Metrics()
    limits = KeyLimits(RedisCounts(settings.REDIS_URL, counted_locally=metrics.key_limit_local_counts.inc)
                       if settings.REDIS_URL else LocalCounts())
    state = AppState(
        registry=RouteRegistry(settings.ROUTES_FILE),
        pool=pool,
        admission=Admission(settings.UPSTREAM_MAX_CONNECTIONS, settings.MAX_CLIENT_REQUESTS,
                            settings.UPSTREAM_POOL_TIMEOUT),
        loader=InstanceLoader(pool, load_timeout=settings.MODEL_LOAD_TIMEOUT),
        downloads=RunningJobs(),
        metrics=metrics,
        observers=Observers([metrics.observe, limits.observe]),
        keys=keys or KeyStore(),
        limits=limits,
        refusals=Refusals(metrics.refused),
    )
    for dotted in settings.EXCHANGE_OBSERVERS if observers is None else observers:
        state.observers.add(import_string(dotted)(state))
    return state


_current: AppState | None = None


def current() -> AppState:
    """The application's state: the one installed, else one built from the settings (once)."""
    global _current
    if _current is None:
        _current = build(settings)
    return _current


def built() -> AppState | None:
    """The application's state if it was built (or installed), else None: nothing is built."""
    return _current


def install(state: AppState | None) -> AppState | None:
    """Make `state` the application's (None: build one from the settings on next use); returns the one
    it replaces."""
    global _current
    previous, _current = _current, state
    return previous


@contextlib.contextmanager
def installed(state: AppState) -> Iterator[AppState]:
    """`state` as the application's for the block (tests), the previous one again after it."""
    previous = install(state)
    try:
        yield state
    finally:
        install(previous)
