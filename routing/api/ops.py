"""Operational views: liveness, readiness, Prometheus metrics, and JSON error pages for API paths."""
from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views import defaults
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from routing.api.views import api_view
from routing.core.errors import NotFound, ProxyError, UpstreamBusy, error_body
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
    the routing); with API_KEY set only a client with the key sees it, probes get the bare status."""
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
    if not has_key(request.headers):
        return json_response({"status": body["status"]}, status)
    return json_response({**body, "backends": dict(pool.status())}, status)


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


def server_error(request: HttpRequest):
    """handler500: never a traceback page; a JSON error on API paths (the traceback is logged)."""
    if not is_api_path(request.path):
        return defaults.server_error(request)
    exc = ProxyError("internal error in the proxy (see its log)")
    return json_response(error_body(exc, dialect_of(request.path)), 500)
