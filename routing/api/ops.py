"""Operational views: liveness, readiness, Prometheus metrics, and JSON error pages for API paths."""
from __future__ import annotations

import sys

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.views import defaults
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from routing.api.views import api_view
from routing.core.errors import NotFound, ProxyError, ServiceUnavailable, UpstreamBusy, error_body
from routing.core.paths import dialect_of, is_api_path
from routing.core.responses import json_response
from routing.proxy.state import current
from routing.security.access import has_key


@api_view(["GET", "HEAD"])
async def health(request: HttpRequest):
    """Liveness: the process answers. Never calls LM Studio."""
    return json_response({"status": "ok"})


@api_view(["GET", "HEAD"])
async def ready(request: HttpRequest):
    """Readiness: some LM Studio backend answers a cheap call within READY_TIMEOUT seconds; 503 when
    none does ("unavailable") or when every upstream slot is taken ("busy": LM Studio is fine, the
    proxy is at its concurrency limit). `backends` gives each one's health (and marks it up or down for
    the routing), and the request log's queue and drops; with API_KEY set only a client with the key
    sees them, probes get the bare status."""
    state = current()
    pool = state.pool.matched((await state.registry.table()).backends)
    answered, failure = await pool.ask(list(pool.states.values()),
                                       lambda backend: backend.upstream.ping(settings.READY_TIMEOUT))
    for name in answered:
        pool.mark_up(pool.states[name])
    if not answered and failure is not None:
        body, status = {"status": "unavailable", **error_body(failure, "ollama")}, 503
    elif state.admission.busy:
        busy = UpstreamBusy(state.admission.busy_message())
        body, status = {"status": "busy", **error_body(busy, "ollama")}, 503
    else:
        body, status = {"status": "ready"}, 200
    if not has_key(request.headers, state.keys.ring()):
        return json_response({"status": body["status"]}, status)
    return json_response({**body, "backends": dict(pool.status()), **state.observers.status(),
                          **state.limits.status()}, status)


@api_view(["GET"])
async def prometheus_metrics(request: HttpRequest):
    """The proxy's metrics in Prometheus' text format."""
    return HttpResponse(generate_latest(current().metrics.registry), content_type=CONTENT_TYPE_LATEST)


def not_found(request: HttpRequest, exception=None):
    """handler404: a JSON error in the dialect's shape on API paths, Django's page elsewhere."""
    if not is_api_path(request.path):
        return defaults.page_not_found(request, exception)
    exc = NotFound(f"no such endpoint: {request.method} {request.path}")
    return json_response(error_body(exc, dialect_of(request.path)), 404)


DATABASE_AWAY = ("The database is unavailable (restarting, or out of reach): the API keeps serving, and "
                 "this page works again once the database is back. Try again in a moment.")


def server_error(request: HttpRequest):
    """handler500: never a traceback page; a JSON error on API paths (the traceback is logged). A lost
    database is a 503 that says so (the admin and history pages while it restarts): Django drops the
    broken connection when the request ends, so the next request connects afresh."""
    unavailable = isinstance(sys.exc_info()[1], (OperationalError, InterfaceError))
    if not is_api_path(request.path):
        if unavailable:
            return HttpResponse(f"<!doctype html><title>Database unavailable</title><h1>Database unavailable</h1>"
                                f"<p>{DATABASE_AWAY}</p>", status=503, content_type="text/html; charset=utf-8")
        return defaults.server_error(request)
    exc = ServiceUnavailable(DATABASE_AWAY) if unavailable else ProxyError(
        "internal error in the proxy (see its log)")
    return json_response(error_body(exc, dialect_of(request.path)), exc.status)
