"""The proxy's one error hierarchy, and the one place that turns an error into a client's error body.

Every failure the proxy reports is a `ProxyError` subclass that knows its HTTP status and message.
Views never build error bodies themselves: `error_body(exc, dialect)` does it for every dialect.
"""
from __future__ import annotations


class ProxyError(Exception):
    """Base class: an error with an HTTP status and a message meant for the client."""

    status = 500
    openai_type = "server_error"
    openai_code: str | None = None

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def headers(self) -> dict[str, str]:
        """Response headers that go with the error (Retry-After for a limit)."""
        return {}


class BadRequest(ProxyError):
    status = 400
    openai_type = "invalid_request_error"


class Unauthorized(ProxyError):
    """A missing or wrong API key (when `API_KEY` is set)."""

    status = 401
    openai_type = "invalid_request_error"
    openai_code = "invalid_api_key"


class Forbidden(ProxyError):
    """A browser page of an origin that may not use the API (see `routing.security.hosts`)."""

    status = 403
    openai_type = "invalid_request_error"


class TooManyRequests(ProxyError):
    """This client already has its share of LM Studio (MAX_CLIENT_REQUESTS requests open)."""

    status = 429
    openai_type = "rate_limit_error"


class KeyLimitReached(TooManyRequests):
    """An API key is over one of its limits (max concurrent, requests per minute, tokens per day)."""

    openai_code = "rate_limit_exceeded"

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = max(1, retry_after)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class UpstreamBusy(ProxyError):
    """Every upstream slot stayed taken for UPSTREAM_POOL_TIMEOUT seconds: LM Studio is fine, the proxy
    is at its concurrency limit."""

    status = 503


class ServiceUnavailable(ProxyError):
    """The proxy cannot serve this now: its database is away, or it is stopping."""

    status = 503


class ClientTooSlow(ProxyError):
    """The client did not send its request within CLIENT_READ_TIMEOUT (shimsite/server.py)."""

    status = 408
    openai_type = "invalid_request_error"


class PayloadTooLarge(ProxyError):
    status = 413
    openai_type = "invalid_request_error"


class ModelNotFound(ProxyError):
    status = 404
    openai_type = "invalid_request_error"
    openai_code = "model_not_found"

    def __init__(self, model: str):
        super().__init__(f"model '{model}' not found")
        self.model = model


class Conflict(ProxyError):
    """The request cannot be done to this thing as it is (e.g. deleting an alias that lives in a file)."""

    status = 409
    openai_type = "invalid_request_error"


class NotSupported(ProxyError):
    """An Ollama feature this proxy cannot provide in front of LM Studio (e.g. pulling models)."""

    status = 501
    openai_type = "invalid_request_error"


class UpstreamError(ProxyError):
    """LM Studio answered with an error; its status and message are passed on."""

    status = 502

    def __init__(self, message: str, status: int = 502):
        super().__init__(message)
        self.status = status


class EndpointMissing(UpstreamError):
    """This LM Studio does not serve a path (an older version: 404, or 200 "Unexpected endpoint")."""

    def __init__(self, message: str):
        super().__init__(message, status=501)


class UpstreamUnavailable(ProxyError):
    status = 502


class UpstreamTimeout(ProxyError):
    status = 504


class ModelNotLoaded(ProxyError):
    """LM Studio has the model but will not load it on demand (JIT loading is off)."""

    status = 409


class MethodNotAllowed(ProxyError):
    status = 405
    openai_type = "invalid_request_error"

    def __init__(self, method: str, path: str, allowed: list[str]):
        super().__init__(f"{method} is not allowed on {path}: use {' or '.join(allowed)}")
        self.allowed = allowed


class NotFound(ProxyError):
    """No such API path."""

    status = 404
    openai_type = "invalid_request_error"


# Anthropic's error `type` for an HTTP status (its API reference, "Errors").
ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                   404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
                   503: "overloaded_error", 529: "overloaded_error"}
OPENAI_SHAPED = ("openai", "responses")


def error_body(exc: ProxyError, dialect: str) -> dict:
    """The JSON body that clients of `dialect` ("ollama", "openai", "responses", "anthropic") expect."""
    if dialect in OPENAI_SHAPED:
        return {
            "error": {
                "message": exc.message,
                "type": exc.openai_type,
                "param": "model" if isinstance(exc, ModelNotFound) else None,
                "code": exc.openai_code,
            }
        }
    if dialect == "anthropic":
        kind = ANTHROPIC_TYPES.get(exc.status, "invalid_request_error" if exc.status < 500 else "api_error")
        return {"type": "error", "error": {"type": kind, "message": exc.message}}
    return {"error": exc.message}
