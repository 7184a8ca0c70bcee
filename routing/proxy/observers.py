"""Where finished exchanges go: the one hand-off point to the request log, metrics and live history.

`Observers` holds plain callables, made once at start-up with the application's state. They run on the
event loop and must not block: anything slow (a database write) is queued by the observer and done
elsewhere. `Observers.recording` is the one way an exchange is handed over: on every exit of the block it
guards, once.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Callable, Iterable, Iterator

from routing.core.errors import ProxyError
from routing.core.exchange import DISCONNECTED, Exchange

log = logging.getLogger(__name__)

Observer = Callable[[Exchange], None]
CLIENT_LEFT = "client disconnected before the answer was complete"


class Observers:
    def __init__(self, observers: Iterable[Observer] = ()):
        self._observers: list[Observer] = list(observers)

    def add(self, observer: Observer) -> Observer:
        """Add an observer (idempotent)."""
        if observer not in self._observers:
            self._observers.append(observer)
        return observer

    def remove(self, observer: Observer):
        if observer in self._observers:
            self._observers.remove(observer)

    def __iter__(self):
        return iter(tuple(self._observers))

    def status(self) -> dict:
        """What observers that keep work report of it (the request log: its queue, its drops), by name."""
        return {observer.name: observer.status() for observer in self if hasattr(observer, "status")}

    def finished(self, exchange: Exchange):
        """Hand a finished exchange to every observer. An observer's failure never reaches the client."""
        exchange.timing.stop()
        exchange.release()
        for observer in tuple(self._observers):
            try:
                observer(exchange)
            except Exception:  # an observer bug must not break the proxy
                log.exception("request observer %r failed", observer)

    @contextlib.contextmanager
    def recording(self, exchange: Exchange, client_left: str = CLIENT_LEFT) -> Iterator[Recording]:
        """Record `exchange` once, however the block ends: a ProxyError is its status and message, a
        client that hangs up (cancellation, a closed generator) a 499, anything else a 500; the
        exception goes on. A block that hands the exchange to a stream (`Recording.hand_over`) leaves
        the recording to that stream's own `recording`."""
        recording = Recording()
        try:
            yield recording
        except ProxyError as exc:
            exchange.fail(exc.status, exc.message)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            exchange.fail(499, client_left, DISCONNECTED)
            raise
        except Exception as exc:
            exchange.fail(500, f"internal error: {type(exc).__name__}")
            raise
        finally:
            if not recording.handed_over:
                self.finished(exchange)


class Recording:
    handed_over = False

    def hand_over(self):
        """The exchange goes on in a stream, which records it when it ends."""
        self.handed_over = True
