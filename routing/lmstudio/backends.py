"""Several LM Studio servers: which one serves a request, and which are down for a while.

`BackendPool` keeps one pooled `Upstream` and one model catalog per configured backend (reused across
route-table reloads while its URL and key stay the same), counts the requests each has open, and takes
a backend that failed out of rotation for a short cool-off; after it, the next request probes it again.
The `default` backend (LMSTUDIO_URL) is always there.
"""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Iterable, Mapping

from routing.config.table import DEFAULT_BACKEND, Route, RouteBackend, RouteTable
from routing.core.errors import EndpointMissing, ProxyError, UpstreamError, UpstreamUnavailable
from routing.lmstudio.admission import Admission
from routing.lmstudio.catalog import ModelCatalog
from routing.lmstudio.client import Upstream
from routing.security.credentials import known_secrets, mask_url


class BackendState:
    """A backend at run time: its client, its model list, its open requests and its health."""

    def __init__(self, backend: RouteBackend, upstream: Upstream, catalog: ModelCatalog):
        self.backend, self.upstream, self.catalog = backend, upstream, catalog
        self.open_requests = 0
        self.down_until = 0.0
        self.failures = 0
        self.last_error = ""

    @property
    def name(self) -> str:
        return self.backend.name

    def is_down(self, now: float) -> bool:
        return now < self.down_until

    def release(self):
        """One request to this backend is over (`Exchange.on_release`)."""
        self.open_requests = max(0, self.open_requests - 1)


class BackendPool:
    """The run-time state of every backend: `make_upstream(backend)` builds a client for one,
    `make_catalog(upstream)` its model list."""

    def __init__(self, default: RouteBackend, make_upstream: Callable[[RouteBackend], Upstream],
                 make_catalog: Callable[[Upstream], ModelCatalog], *, cool_off: float = 10.0,
                 operator_secrets: Iterable[str] = (), clock: Callable[[], float] = time.monotonic):
        self.make_upstream, self.make_catalog = make_upstream, make_catalog
        self.cool_off, self.clock = cool_off, clock
        self.states: dict[str, BackendState] = {}
        self._operator_secrets = tuple(operator_secrets)
        self._matched: Mapping | None = None  # the table's `backends` mapping last matched to
        self.secrets: tuple[str, ...] = ()
        self.sync([default])

    @property
    def default(self) -> BackendState:
        """The `default` backend (LMSTUDIO_URL)."""
        return self.states[DEFAULT_BACKEND]

    def sync(self, backends: Iterable[RouteBackend]) -> list[Upstream]:
        """Match the pool to the configured backends (`default` stays); returns the clients no longer
        used (to close)."""
        wanted = {DEFAULT_BACKEND: self.states[DEFAULT_BACKEND].backend} if self.states else {}
        wanted.update({b.name: b for b in backends})
        retired = []
        for name in list(self.states):
            if wanted.get(name) != self.states[name].backend:
                retired.append(self.states.pop(name).upstream)
        for name, backend in wanted.items():
            if name not in self.states:
                upstream = self.make_upstream(backend)
                self.states[name] = BackendState(backend, upstream, self.make_catalog(upstream))
        # Swapped as one tuple: the request log's writer thread reads it, never the dict above.
        self.secrets = known_secrets(self._operator_secrets, self.configured())
        return retired

    def matched(self, backends: Mapping[str, RouteBackend] | None) -> BackendPool:
        """The pool, first matched to a route table's `backends` when they changed."""
        if backends is not None and backends is not self._matched:
            self._matched = backends
            for upstream in self.sync(backends.values()):
                _close_later(upstream)
        return self

    def configured(self) -> list[RouteBackend]:
        return [state.backend for state in self.states.values()]

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

    def first(self, table: RouteTable, route: Route) -> BackendState:
        """The backend a request for `route` would try first (for loading and unloading its model)."""
        names, policy = route.backends(table.defaults)
        candidates = self.matched(table.backends).candidates(names, policy)
        if not candidates:
            raise _no_backend(names)
        return candidates[0]

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

    # --- requests across backends -----------------------------------------------------------------

    async def open(self, admission: Admission, table: RouteTable, route: Route, exchange, method: str,
                   path: str, body: dict, *, model: str):
        """Open an LM Studio request on the route's backends, in policy order; returns (upstream,
        response).

        A backend that is unreachable or answers 5xx (before anything was streamed) is marked down for
        its cool-off and the next is tried; the last failure is raised when none answers. The backend
        that answers is marked up, recorded as `exchange.backend` (the last one tried when none
        answers), and counted as busy until the exchange finishes (`exchange.release`). The request
        holds one of the client's upstream slots (`admission`) for as long.
        """
        leave = await admission.enter(exchange.client, exchange.grant)
        try:
            return await self._open_first(table, route, exchange, method, path, body, model, leave)
        except BaseException:
            leave()
            raise

    async def _open_first(self, table, route, exchange, method, path, body, model, leave):
        names, policy = route.backends(table.defaults)
        failure = None
        for state in self.matched(table.backends).candidates(names, policy):
            exchange.backend = state.name  # when every backend fails: the last one tried
            state.open_requests += 1
            try:
                response = await state.upstream.open(method, path, exchange.body_for(state.name, body),
                                                     model=model)
            except BaseException as exc:
                state.open_requests -= 1
                if not worth_another_backend(exc):
                    raise
                self.mark_down(state, getattr(exc, "message", str(exc)))
                failure = exc
                continue
            self.mark_up(state)
            exchange.on_release(state.release)
            exchange.on_release(leave)
            return state.upstream, response
        raise failure or _no_backend(names)

    async def ask(self, states: list[BackendState], call: Callable[[BackendState], Awaitable]):
        """`await call(state)` for every backend at once: ({name: result} of those that answered, the
        last ProxyError or None). A backend that fails with a ProxyError is marked down."""
        results = await asyncio.gather(*(call(state) for state in states), return_exceptions=True)
        answered, failure = {}, None
        for state, result in zip(states, results):
            if isinstance(result, ProxyError):
                self.mark_down(state, result.message)
                failure = result
            elif isinstance(result, BaseException):
                raise result
            else:
                answered[state.name] = result
        return answered, failure

    async def models_by_backend(self, backends: Mapping[str, RouteBackend]) -> dict[str, Mapping[str, dict]]:
        """Each backend's model list (cached per backend), `default` first. A backend that cannot be
        asked cools off like after a failed request, so that an unreachable host does not hold up every
        model list for its connect timeout; meanwhile its last list stands in (or it is left out). When
        no backend has a list, the last failure is raised."""
        self.matched(backends)
        now = self.clock()
        found, failure, asked = {}, None, []
        for state in self.states.values():
            if not state.is_down(now):
                asked.append(state)
            elif state.catalog.last():
                found[state.name] = state.catalog.last()
            else:
                failure = UpstreamUnavailable(f"LM Studio backend '{state.name}' is cooling off after: "
                                              f"{state.last_error}")
        answered, failed = await self.ask(asked, lambda state: state.catalog.models())
        found.update(answered)
        failure = failed or failure
        if not found and failure is not None:
            raise failure
        return {name: found[name] for name in self.states if name in found}  # in the pool's order

    async def models_everywhere(self, table: RouteTable) -> dict[str, dict]:
        """The models of every backend in one list; a model several backends have is described by the
        first of them (the `default` backend, then routes.yaml's order)."""
        merged: dict[str, dict] = {}
        for models in (await self.models_by_backend(table.backends)).values():
            for model_id, description in models.items():
                merged.setdefault(model_id, description)
        return merged

    async def aclose(self):
        for state in self.states.values():
            await state.upstream.aclose()


def worth_another_backend(exc) -> bool:
    """A failure that says this backend cannot serve now (down, or its 5xx), not that the request is
    wrong: the next backend may answer."""
    if isinstance(exc, UpstreamUnavailable):
        return True
    return isinstance(exc, UpstreamError) and not isinstance(exc, EndpointMissing) and exc.status >= 500


def _no_backend(names):
    return UpstreamUnavailable(f"no configured backend among {', '.join(names)} (see routes.yaml's "
                               f"backends: and the admin's)")


def _close_later(upstream: Upstream):
    try:
        asyncio.get_running_loop().create_task(upstream.aclose())
    except RuntimeError:  # no loop (a sync caller): the client is dropped with its connections
        pass
