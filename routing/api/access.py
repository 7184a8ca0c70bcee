"""The head gate as Django middleware, with the application's keys handed in.

`routing.security.access.head_refusal` decides; this layer may reach the application's state, so it
hands the gate the current `KeyRing` and puts whose key it was on the request (`request.api_key`: a
`KeyGrant`, or None) for the pipeline and the listings.
"""
from __future__ import annotations

from asgiref.sync import markcoroutinefunction
from django.http import HttpRequest, HttpResponse

from routing.core.errors import Forbidden, ProxyError
from routing.proxy.state import current
from routing.security.access import head_refusal, key_grant, refusal_response
from routing.security.clients import client_of

# What changes the models everyone uses (aliases made, copied over or deleted; downloads): not for a key
# scoped to some models, which could otherwise point a name in its scope at any model.
MANAGING_PATHS = frozenset({"/api/create", "/api/copy", "/api/delete", "/api/pull", "/api/push"})


class ApiAccessMiddleware:
    """Applies `head_refusal` to every request; async only (no thread hop)."""

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        ring = current().keys.ring()
        # Django's host as it would check it (X-Forwarded-Host only when USE_X_FORWARDED_HOST)
        problem = head_refusal(request.method, request.path, request.headers, request._get_raw_host(), ring)
        if problem is not None:
            return refused(request, problem)
        request.api_key = grant = key_grant(request.headers, ring)
        if grant is not None and grant.scope and (request.path in MANAGING_PATHS
                                                  or request.path.startswith("/api/blobs/")):
            return refused(request, Forbidden(
                f"the API key {grant.name!r} is limited to some models: it may not create, copy, delete "
                f"or pull models"))
        if grant is not None and grant.hash:  # a person's key, not the operator's
            current().keys.used(grant.name)
        return await self.get_response(request)


def refused(request: HttpRequest, problem: ProxyError) -> HttpResponse:
    current().refusals.note(problem, request.method, request.path, client_of(request.META.get("REMOTE_ADDR", ""),
                                                                              request.headers))
    return refusal_response(request.path, problem)
