"""Several LM Studio servers: which one serves a request, and which are down for a while.

`BackendPool` keeps one pooled `Upstream` per configured backend (reused across route-table reloads
while its URL and key stay the same), counts the requests each has open, and takes a backend that
failed out of rotation for a short cool-off; after it, the next request probes it again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from .secrets import mask_url

DEFAULT_BACKEND = "default"
POLICIES = ("fallback", "least-busy")


@dataclass(frozen=True)
class Backend:
    """A configured LM Studio server."""

    name: str
    url: str
    api_key: str = ""


@dataclass
class BackendState:
    """A backend at run time: its client, its open requests and its health."""

    backend: Backend
    upstream: object
    open_requests: int = 0
    down_until: float = 0.0
    failures: int = 0
    last_error: str = ""
    catalog: object = None  # its model list, made on first use (see `catalog_of`)

    @property
    def name(self) -> str:
        return self.backend.name

    def is_down(self, now: float) -> bool:
        return now < self.down_until


@dataclass
class BackendPool:
    """The run-time state of every backend; `make_upstream(backend)` builds a client for one."""

    make_upstream: Callable[[Backend], object]
    cool_off: float = 10.0
    clock: Callable[[], float] = time.monotonic
    states: dict[str, BackendState] = field(default_factory=dict)

    def sync(self, backends: Iterable[Backend]) -> list[object]:
        """Match the pool to the configured backends; returns the clients no longer used (to close)."""
        wanted = {b.name: b for b in backends}
        retired = []
        for name in list(self.states):
            state = self.states[name]
            if wanted.get(name) != state.backend:
                retired.append(self.states.pop(name).upstream)
        for name, backend in wanted.items():
            if name not in self.states:
                self.states[name] = BackendState(backend, self.make_upstream(backend))
        return retired

    def candidates(self, names: Iterable[str], policy: str = "fallback") -> list[BackendState]:
        """The backends to try, in order: those up (in the alias's order, or fewest open requests
        first for least-busy), then those cooling off (still worth a try when all are down)."""
        states = [self.states[n] for n in names if n in self.states]
        now = self.clock()
        up = [s for s in states if not s.is_down(now)]
        down = sorted((s for s in states if s.is_down(now)), key=lambda s: s.down_until)
        if policy == "least-busy":
            up.sort(key=lambda s: s.open_requests)  # stable: ties keep the alias's order
        return up + down

    def mark_down(self, state: BackendState, error: str):
        state.failures += 1
        state.last_error = error
        state.down_until = self.clock() + self.cool_off

    def mark_up(self, state: BackendState):
        state.failures, state.down_until, state.last_error = 0, 0.0, ""

    def status(self) -> Mapping[str, dict]:
        """For /ready and the admin: each backend's health and load."""
        now = self.clock()
        return {s.name: {"url": mask_url(s.backend.url), "up": not s.is_down(now), "open_requests": s.open_requests,
                         "last_error": s.last_error} for s in self.states.values()}


# --- The process's pool, matched to settings and the route table ---------------------------------

_pool: BackendPool | None = None
_synced: Mapping | None = None  # the table's `backends` mapping the pool was last matched to


def default_backend() -> Backend:
    """LMSTUDIO_URL (+ LMSTUDIO_API_KEY): the backend of every alias that names none."""
    from django.conf import settings

    from .upstream import get_upstream

    return Backend(DEFAULT_BACKEND, get_upstream().url, settings.LMSTUDIO_API_KEY)


def _make_upstream(backend: Backend):
    from .upstream import get_upstream, make_upstream

    if backend.name == DEFAULT_BACKEND:
        return get_upstream()  # the one client lifecycle, the catalog and the admin use too
    return make_upstream(backend.url, backend.api_key)


def get_pool(backends: Mapping[str, Backend] | None = None) -> BackendPool:
    """The process's pool, first matched to `backends` (a route table's; `default` is always there)."""
    global _pool, _synced
    if _pool is None:
        from django.conf import settings

        _pool = BackendPool(make_upstream=_make_upstream, cool_off=settings.BACKEND_COOL_OFF)
    if backends is not None and backends is not _synced or not _pool.states:
        _synced = backends if backends is not None else _synced
        for upstream in _pool.sync([default_backend(), *(_synced or {}).values()]):
            _close_later(upstream)
    return _pool


def _close_later(upstream):
    import asyncio

    try:
        asyncio.get_running_loop().create_task(upstream.aclose())
    except RuntimeError:  # no loop (a sync caller): the client is dropped with its connections
        pass


def current_backends() -> list[Backend]:
    """The backends in force in this process (none before the first request)."""
    return [state.backend for state in _pool.states.values()] if _pool is not None else []


def reset_pool():
    """Forget the pool (tests that replace the default client)."""
    global _pool, _synced
    _pool, _synced = None, None


def catalog_of(state: BackendState):
    """The model list of one backend (the default backend's is `routing.catalog.get_catalog()`)."""
    from .catalog import ModelCatalog, get_catalog

    if state.name == DEFAULT_BACKEND:
        return get_catalog()
    if state.catalog is None:
        from django.conf import settings

        state.catalog = ModelCatalog(state.upstream, ttl=settings.MODEL_LIST_TTL)
    return state.catalog


def worth_another_backend(exc) -> bool:
    """A failure that says this backend cannot serve now (down, or its 5xx), not that the request is
    wrong: the next backend may answer."""
    from .errors import EndpointMissing, UpstreamError, UpstreamUnavailable

    if isinstance(exc, UpstreamUnavailable):
        return True
    return isinstance(exc, UpstreamError) and not isinstance(exc, EndpointMissing) and exc.status >= 500


async def open_on_backends(table, route, exchange, method: str, path: str, body: dict, *, model: str):
    """Open an LM Studio request on the route's backends, in policy order; returns (upstream, response).

    A backend that is unreachable or answers 5xx (before anything was streamed) is marked down for
    BACKEND_COOL_OFF seconds and the next is tried; the last failure is raised when none answers. The
    backend that answers is marked up, recorded as `exchange.backend` (the last one tried when none
    answers), and counted as busy until the exchange finishes (`exchange.release`). The request holds
    one of the client's upstream slots (`routing.fairness`) for as long.
    """
    from .fairness import get_admission

    leave = await get_admission().enter(exchange.client)
    try:
        return await _open_first(table, route, exchange, method, path, body, model=model, leave=leave)
    except BaseException:
        leave()
        raise


async def _open_first(table, route, exchange, method: str, path: str, body: dict, *, model: str, leave):
    pool = get_pool(table.backends)
    names, policy = route.backends(table.defaults)
    failure = None
    for state in pool.candidates(names, policy):
        exchange.backend = state.name  # when every backend fails: the last one tried
        state.open_requests += 1
        try:
            response = await state.upstream.open(method, path, exchange.body_for(state.name, body),
                                                 model=model)
        except BaseException as exc:
            state.open_requests -= 1
            if not worth_another_backend(exc):
                raise
            pool.mark_down(state, getattr(exc, "message", str(exc)))
            failure = exc
            continue
        pool.mark_up(state)
        exchange.on_release(lambda state=state: _release(state))
        exchange.on_release(leave)
        return state.upstream, response
    raise failure or _no_backend(names)


def _release(state: BackendState):
    state.open_requests = max(0, state.open_requests - 1)


def first_backend(table, route) -> BackendState:
    """The backend a request for `route` would try first (for loading and unloading its model)."""
    names, policy = route.backends(table.defaults)
    candidates = get_pool(table.backends).candidates(names, policy)
    if not candidates:
        raise _no_backend(names)
    return candidates[0]


def _no_backend(names):
    from .errors import UpstreamUnavailable

    return UpstreamUnavailable(f"no configured backend among {', '.join(names)} (see routes.yaml's "
                               f"backends: and the admin's)")


async def ask_backends(pool: BackendPool, states: list[BackendState], call) -> tuple[dict, object]:
    """`await call(state)` for every backend at once: ({name: result} of those that answered, the last
    ProxyError or None). A backend that fails with a ProxyError is marked down."""
    import asyncio

    from .errors import ProxyError

    results = await asyncio.gather(*(call(state) for state in states), return_exceptions=True)
    answered, failure = {}, None
    for state, result in zip(states, results):
        if isinstance(result, ProxyError):
            pool.mark_down(state, result.message)
            failure = result
        elif isinstance(result, BaseException):
            raise result
        else:
            answered[state.name] = result
    return answered, failure


async def models_by_backend(backends: Mapping[str, Backend]) -> dict[str, Mapping[str, dict]]:
    """Each backend's model list (cached per backend for MODEL_LIST_TTL), `default` first. A backend
    that cannot be asked cools off like after a failed request, so that an unreachable host does not
    hold up every model list for its connect timeout; meanwhile its last list stands in (or it is left
    out). When no backend has a list, the last failure is raised."""
    from .errors import UpstreamUnavailable

    pool = get_pool(backends)
    now = pool.clock()
    found, failure, asked = {}, None, []
    for state in pool.states.values():
        if not state.is_down(now):
            asked.append(state)
        elif catalog_of(state).last():
            found[state.name] = catalog_of(state).last()
        else:
            failure = UpstreamUnavailable(f"LM Studio backend '{state.name}' is cooling off after: "
                                          f"{state.last_error}")
    answered, failed = await ask_backends(pool, asked, lambda state: catalog_of(state).models())
    found.update(answered)
    failure = failed or failure
    if not found and failure is not None:
        raise failure
    return {name: found[name] for name in pool.states if name in found}  # in the pool's order


async def models_everywhere(table) -> dict[str, dict]:
    """The models of every backend in one list; a model several backends have is described by the
    first of them (the `default` backend, then routes.yaml's order)."""
    merged: dict[str, dict] = {}
    for models in (await models_by_backend(table.backends)).values():
        for model_id, description in models.items():
            merged.setdefault(model_id, description)
    return merged
