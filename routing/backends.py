"""Several LM Studio servers: which one serves a request, and which are down for a while.

`BackendPool` keeps one pooled `Upstream` per configured backend (reused across route-table reloads
while its URL and key stay the same), counts the requests each has open, and takes a backend that
failed out of rotation for a short cool-off; after it, the next request probes it again.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

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
        return {s.name: {"url": s.backend.url, "up": not s.is_down(now), "open_requests": s.open_requests,
                         "last_error": s.last_error} for s in self.states.values()}
