"""What an API path is: one definition for the head gate, the ASGI split, error pages and declared
endpoints.

API paths are Ollama's (`/api/...` and `/`), OpenAI's and Anthropic's (`/v1`, `/v1/...`) and the probes
(`/health`, `/ready`, `/metrics`): JSON errors in the client's dialect, the API key when one is set,
and the lean handler. Everything else (the admin, the history pages, static files) is the site's.
"""
from __future__ import annotations

API_PREFIXES = ("/api/", "/v1/")
API_EXACT = frozenset({"/", "/v1", "/health", "/ready", "/metrics"})
# The same set as one regular expression, for what takes one (django-cors-headers' CORS_URLS_REGEX).
API_PATH_REGEX = r"^/(api/|v1/|v1$|health$|ready$|metrics$|$)"


def is_api_path(path: str) -> bool:
    """Whether `path` is the API's rather than the admin's or a page."""
    return path.startswith(API_PREFIXES) or path in API_EXACT


# Paths the proxy serves itself: a declared endpoint (routes.yaml's `endpoints:`, the admin's) may not
# shadow them (tests/test_resolution.py keeps this in step with the URL configuration).
RESERVED_PATHS = frozenset({"/", "/health", "/ready", "/metrics"})
RESERVED_PREFIXES = ("/api/chat", "/api/generate", "/api/tags", "/api/show", "/api/ps", "/api/version",
                     "/api/embed", "/api/copy", "/api/delete", "/api/pull", "/api/push", "/api/create",
                     "/api/blobs", "/v1/", "/admin", "/history", "/static/", "/ws/")


def is_reserved(path: str) -> bool:
    return path in RESERVED_PATHS or path.startswith(RESERVED_PREFIXES)


def dialect_of(path: str) -> str:
    """The error dialect a client of `path` expects: "anthropic" on /v1/messages, "openai" elsewhere
    under /v1, "ollama" everywhere else."""
    if path == "/v1/messages" or path.startswith("/v1/messages/"):
        return "anthropic"
    return "openai" if path == "/v1" or path.startswith("/v1/") else "ollama"


# A key in the path, for clients that can send no header (GitHub Copilot's Ollama provider): every API
# path also answers under /k/<key>/... The key is taken off before anything routes, checks or logs the
# path (shimsite.path_keys; the Twisted gate in shimsite.server), and sent on as `Authorization: Bearer`.
KEY_PATH_PREFIX = "/k/"
MASKED_KEY = "***"


def split_path_key(path: str) -> tuple[str, str]:
    """(the path without a leading /k/<key>, the key) for /k/<key>/...; (path, "") otherwise."""
    if not path.startswith(KEY_PATH_PREFIX):
        return path, ""
    key, slash, rest = path[len(KEY_PATH_PREFIX):].partition("/")
    return slash + rest or "/", key


def mask_path_key(path: str) -> str:
    """The path as it may be shown or logged: a key in it replaced by ***."""
    rest, key = split_path_key(path)
    return f"{KEY_PATH_PREFIX}{MASKED_KEY}{rest}" if key else path
