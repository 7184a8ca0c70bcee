"""Where finished exchanges go: the one hand-off point to the request log, metrics and live history.

Observers are plain callables registered at start-up (an AppConfig.ready). They run on the event loop
and must not block: anything slow (a database write) is queued by the observer and done elsewhere.
"""
from __future__ import annotations

import logging
from typing import Callable

from .exchange import Exchange

log = logging.getLogger(__name__)

Observer = Callable[[Exchange], None]
_observers: list[Observer] = []


def register(observer: Observer) -> Observer:
    """Add an observer (idempotent); usable as a decorator."""
    if observer not in _observers:
        _observers.append(observer)
    return observer


def unregister(observer: Observer):
    if observer in _observers:
        _observers.remove(observer)


def exchange_finished(exchange: Exchange):
    """Hand a finished exchange to every observer. An observer's failure never reaches the client."""
    exchange.timing.stop()
    exchange.release()
    for observer in tuple(_observers):
        try:
            observer(exchange)
        except Exception:  # an observer bug must not break the proxy
            log.exception("request observer %r failed", observer)
