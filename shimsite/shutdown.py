"""A graceful stop: SIGTERM or SIGINT lets what is in flight finish, then the server exits 0.

As nginx's `quit` or gunicorn's graceful timeout: on the first signal the server stops accepting
connections, and the HTTP requests in flight (streams included) have SHUTDOWN_GRACE seconds to finish.
Streams still open then end with the dialect's error event ("the proxy is stopping") at their next batch
(`AppState.stopping`, read by the relay); after END_WAIT more seconds whatever is left is cancelled as
Daphne cancels it at any stop. The connections to LM Studio are closed, the reactor stops, and the
request log's queue is written at exit (`RequestLogObserver.close`, atexit, after the reactor: the rows of
requests cancelled last are queued by then). A second signal stops at once.

Daphne installs Twisted's handlers (stop the reactor now) when it runs the reactor; these replace them,
once the reactor runs (`install`, from shimsite/asgi.py). Only public Twisted API is used: the listening
ports are the reactor's readers that are `tcp.Port`s.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import time

from twisted.internet import defer, reactor, tcp

from routing.core.errors import ServiceUnavailable

log = logging.getLogger("routing.server")

POLL = 0.05      # seconds between looks at what is still in flight
END_WAIT = 3.0   # seconds streams get, after the grace period, to send their error event


class InFlight:
    """ASGI middleware counting the HTTP requests being served (a stream until its last byte)."""

    def __init__(self, app):
        self.app, self.count = app, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        self.count += 1
        try:
            return await self.app(scope, receive, send)
        finally:
            self.count -= 1


class GracefulStop:
    """What a SIGTERM or SIGINT does to this server (see the module's docstring)."""

    def __init__(self, in_flight: InFlight, state, grace: float, clock=time.monotonic):
        self.in_flight, self.state, self.grace, self.clock = in_flight, state, grace, clock
        self.started: float | None = None

    def install(self):
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, self.signalled)

    def signalled(self, number, frame):
        """The handler: runs between two bytecodes of the main thread, so it only hands over."""
        reactor.callFromThread(self.begin if self.started is None else self.now, signal.Signals(number).name)

    def begin(self, why: str):
        self.started = self.clock()
        for reader in reactor.getReaders():
            if isinstance(reader, tcp.Port):
                reader.stopListening()
        log.warning("%s: stopping; no new connections, %d requests in flight get up to %g s (SHUTDOWN_GRACE)",
                    why, self.in_flight.count, self.grace)
        self.check()

    def check(self):
        waited = self.clock() - self.started
        if self.in_flight.count and waited < self.grace + END_WAIT:
            if waited >= self.grace and self.state.stopping is None:
                log.warning("stopping: %d requests still in flight after %g s; ending their streams",
                            self.in_flight.count, self.grace)
                self.state.stopping = ServiceUnavailable(
                    f"the proxy is stopping: the answer was cut after {self.grace:g} s (SHUTDOWN_GRACE)")
            reactor.callLater(POLL, self.check)
            return
        self.finish()

    def finish(self):
        log.warning("stopping: %d requests were still in flight; closing the connections to LM Studio",
                    self.in_flight.count)
        # On asyncio's loop (Daphne runs Twisted on it): the clients' close awaits asyncio futures, which a
        # coroutine driven by Twisted (ensureDeferred) cannot.
        closed = defer.Deferred.fromFuture(asyncio.ensure_future(self.state.aclose()))
        closed.addErrback(lambda failure: log.error("closing LM Studio's connections failed: %s", failure.value))
        closed.addBoth(lambda _: stop_reactor())

    def now(self, why: str):
        log.warning("%s again: stopping now", why)
        stop_reactor()


def stop_reactor():
    if reactor.running:
        reactor.stop()


def install(application, state, grace: float):
    """`application` wrapped to count what is in flight; the signal handlers are installed once the
    reactor runs (Daphne installs Twisted's own as it starts it)."""
    in_flight = InFlight(application)
    reactor.callWhenRunning(GracefulStop(in_flight, state, grace).install)
    return in_flight
