"""Who may use the API, and how much they may send, decided from the request's head alone.

`head_refusal` is the one policy: the `Host` (every path), the browser `Origin`, the API key and the
declared body size (API paths). It needs only the method, path and headers, so it runs twice with the
same answer: in the Twisted gate (`shimsite.server`), before a byte of the body is read, and in
`routing.api.access.ApiAccessMiddleware` for whatever did not come through that gate (Django's test
client, another ASGI server). Running it twice costs microseconds; trusting a mark on the request would
be one more thing to forge.

When the `API_KEY` setting is set or any API key is enabled (`routing.security.keys`), every API path
(`routing.core.paths`) needs `Authorization: Bearer <key>` (or `x-api-key: <key>`, as Anthropic clients
send it); a missing, unknown, disabled or expired key is a 401 in the dialect's error shape. The keys
come in as a `KeyRing`, a snapshot handed in by the caller (this layer never reaches the application's
state). A short list of paths stays public so that clients can discover the server and probes can watch
it; `PUBLIC_MODEL_LISTING` adds the model lists (GitHub Copilot's Ollama provider sends no key when it
lists models). The admin and history pages are not API paths: they keep Django's login and CSRF
protection.
"""
from __future__ import annotations

import hmac
from typing import Mapping

from django.conf import settings
from django.http import HttpResponse

from routing.core.errors import BadRequest, Forbidden, PayloadTooLarge, ProxyError, Unauthorized, error_body
from routing.core.paths import dialect_of, is_api_path
from routing.core.responses import json_response
from routing.security import hosts
from routing.security.keys import EMPTY_RING, OPERATOR_GRANT, KeyGrant, KeyRing

# Reachable without a key: Ollama's discovery endpoints (clients probe them before anything else)
# and the liveness/readiness probes (/ready shows its detail only with the key). /metrics is not
# public: it names models.
PUBLIC_PATHS = frozenset({"/", "/api/version", "/health", "/ready"})
# Public too with PUBLIC_MODEL_LISTING: what a client needs to show a model picker.
MODEL_LISTING_PATHS = frozenset({"/api/tags", "/api/show", "/api/version", "/v1/models"})
def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or (settings.PUBLIC_MODEL_LISTING and path in MODEL_LISTING_PATHS)


def presented_key(headers: Mapping[str, str]) -> str:
    """The key a client sent: the bearer token of `Authorization`, else `x-api-key`, else ""."""
    scheme, _, token = (headers.get("authorization") or "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return (headers.get("x-api-key") or "").strip()


def key_matches(presented: str, expected: str) -> bool:
    """Constant-time comparison, so the time taken says nothing about how much of the key matched."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


def key_grant(headers: Mapping[str, str], ring: KeyRing = EMPTY_RING) -> KeyGrant | None:
    """Whose key the request carries: the operator's (`API_KEY`), a person's from `ring`, or None."""
    presented = presented_key(headers)
    if not presented:
        return None
    if settings.API_KEY and key_matches(presented, settings.API_KEY):
        return OPERATOR_GRANT
    return ring.find(presented)


def keys_required(ring: KeyRing = EMPTY_RING) -> bool:
    return bool(settings.API_KEY) or ring.required


def has_key(headers: Mapping[str, str], ring: KeyRing = EMPTY_RING) -> bool:
    """Whether the request may see what a key protects (always, when no key is required)."""
    return not keys_required(ring) or key_grant(headers, ring) is not None


def host_refusal(host: str) -> ProxyError | None:
    if hosts.host_allowed(host, settings.PROXY_ALLOWED_HOSTS, hosts.own_names()):
        return None
    return BadRequest(f"host not allowed: {host!r} (add it to ALLOWED_HOSTS)")


def origin_refusal(headers: Mapping[str, str]) -> ProxyError | None:
    origin = headers.get("origin")
    if origin is None or hosts.origin_allowed(origin, settings.CORS_ALLOWED_ORIGINS,
                                              settings.CORS_ALLOWED_ORIGIN_REGEXES,
                                              settings.CORS_ALLOW_ALL_ORIGINS):
        return None
    return Forbidden(f"origin not allowed: {origin!r} (add it to CORS_ALLOWED_ORIGINS)")


def length_refusal(declared: str | None) -> ProxyError | None:
    try:
        length = int(declared or 0)
    except ValueError:
        return BadRequest("invalid Content-Length")
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if limit is not None and length > limit:
        return PayloadTooLarge(f"request body too large: {length} bytes, the limit is {limit} "
                               f"(MAX_REQUEST_BYTES)")
    return None


def head_refusal(method: str, path: str, headers: Mapping[str, str], host: str,
                 ring: KeyRing = EMPTY_RING) -> ProxyError | None:
    """Why a `method` request for `path` with these headers (looked up by lower-case name) and this
    `Host` may not go further, or None. A CORS preflight needs no key: browsers never send credentials
    with one, and it only asks what the real request may do (corsheaders answers it)."""
    problem = host_refusal(host)
    if problem is not None or not is_api_path(path):
        return problem
    problem = origin_refusal(headers)
    preflight = method == "OPTIONS" and "access-control-request-method" in headers
    if problem is None and not preflight and not is_public(path) and not has_key(headers, ring):
        problem = Unauthorized("missing or invalid API key: send the header 'Authorization: Bearer <key>' "
                               "(or 'x-api-key: <key>')")
    return problem or length_refusal(headers.get("content-length"))


def refusal_response(path: str, problem: ProxyError) -> HttpResponse:
    """The answer to a refused request: JSON in the dialect's shape on API paths, plain elsewhere."""
    if not is_api_path(path):
        return HttpResponse(problem.message, status=problem.status, content_type="text/plain; charset=utf-8")
    response = json_response(error_body(problem, dialect_of(path)), problem.status)
    if isinstance(problem, Unauthorized):
        response["WWW-Authenticate"] = 'Bearer realm="api"'
    return response
