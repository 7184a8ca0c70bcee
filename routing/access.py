"""Who may use the API, and how much they may send: one async middleware in front of every view.

When the `API_KEY` setting is set, every API path (`/api/*`, `/v1/*` and `/metrics`) needs
`Authorization: Bearer <key>`; a missing or wrong key is a 401 in the dialect's error shape. A short
list of paths stays public so that clients can discover the server and probes can watch it. The admin
and history pages are not API paths: they keep Django's login and CSRF protection.

A body larger than `MAX_REQUEST_BYTES` is refused with a 413 in the dialect's shape as soon as its
declared length is seen, whatever the view; bodies without a declared length (chunked) are checked when
the pipeline reads them (`routing.pipeline.parse_body`).
"""
from __future__ import annotations

import hmac

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse

from .errors import BadRequest, PayloadTooLarge, ProxyError, Unauthorized, dialect_of, error_body
from .pipeline import json_response

# Reachable without a key: Ollama's discovery endpoints (clients probe them before anything else)
# and the liveness/readiness probes (which reveal nothing). /metrics is not public: it names models.
PUBLIC_PATHS = frozenset({"/", "/api/version", "/health", "/ready"})
API_PREFIXES = ("/api/", "/v1/")
API_PATHS = frozenset({"/v1", "/metrics"})


def is_api_path(path: str) -> bool:
    """Whether `path` is the API's (key-protected, JSON errors) rather than the admin's or a page."""
    return path.startswith(API_PREFIXES) or path in API_PATHS


def presented_key(request: HttpRequest) -> str:
    """The bearer token of the request's Authorization header, else its `x-api-key` header (Anthropic's
    clients send the key there), or ""."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        return token.strip()
    return request.headers.get("X-Api-Key", "").strip()


def key_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about how much of the key matched."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


def refusal(request: HttpRequest) -> ProxyError | None:
    """Why this API request may not go further, or None."""
    try:  # ALLOWED_HOSTS (DNS rebinding): the lean API handler has no CommonMiddleware to check it
        request.get_host()
    except DisallowedHost:
        return BadRequest(f"host not allowed: {request.META.get('HTTP_HOST', '')!r} (add it to ALLOWED_HOSTS)")
    api_key = settings.API_KEY
    if api_key and request.path not in PUBLIC_PATHS and not key_matches(presented_key(request), api_key):
        return Unauthorized("missing or invalid API key: send the header 'Authorization: Bearer <key>' "
                            "(or 'x-api-key: <key>')")
    try:
        declared = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        declared = 0
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and declared > limit:
        return PayloadTooLarge(f"request body too large: {declared} bytes, the limit is {limit} "
                               f"(MAX_REQUEST_BYTES)")
    return None


class ApiAccessMiddleware:
    """Checks the API key and the declared body size of API requests; other paths pass untouched.

    Async only: it runs on the event loop with the async views, with no thread hop.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api_path(request.path) or request.path in PUBLIC_PATHS:
            problem = refusal(request)
            if problem is not None:
                response = json_response(error_body(problem, dialect_of(request.path)), problem.status)
                if isinstance(problem, Unauthorized):
                    response["WWW-Authenticate"] = 'Bearer realm="api"'
                return response
        return await self.get_response(request)
