"""One definition of "API path" (routing/core/paths.py): the gate, the ASGI split, error pages and CORS
all use it, and the probes take the lean API stack."""
import re

import pytest
from django.conf import settings

from routing.core.paths import API_PATH_REGEX, dialect_of, is_api_path

PATHS = [
    ("/", True), ("/api/chat", True), ("/api/tags", True), ("/api/anything", True), ("/v1", True),
    ("/v1/chat/completions", True), ("/v1/messages", True), ("/health", True), ("/ready", True),
    ("/metrics", True), ("/admin/", False), ("/history/", False), ("/static/admin/x.css", False),
    ("/ws/history/", False), ("/healthz", False), ("/metrics/x", False), ("/api", False), ("/v1x", False),
]


@pytest.mark.parametrize("path, api", PATHS)
def test_an_api_path_is_ollamas_openais_anthropics_or_a_probe(path, api):
    assert is_api_path(path) is api


@pytest.mark.parametrize("path, api", PATHS)
def test_the_regular_expression_for_cors_says_the_same(path, api):
    assert bool(re.match(API_PATH_REGEX, path)) is api
    assert settings.CORS_URLS_REGEX == API_PATH_REGEX


@pytest.mark.parametrize("path, dialect", [("/v1/messages", "anthropic"), ("/v1/messages/count_tokens", "anthropic"),
                                           ("/v1/chat/completions", "openai"), ("/v1", "openai"),
                                           ("/api/chat", "ollama"), ("/health", "ollama"), ("/", "ollama")])
def test_errors_take_the_dialect_of_the_path(path, dialect):
    assert dialect_of(path) == dialect


@pytest.mark.anyio
@pytest.mark.parametrize("path, handler", [("/health", "api"), ("/ready", "api"), ("/metrics", "api"),
                                           ("/api/chat", "api"), ("/", "api"), ("/admin/", "site"),
                                           ("/history/", "site")])
async def test_the_asgi_split_sends_api_paths_and_probes_to_the_lean_handler(path, handler):
    from shimsite.fast_path import SplitHTTP

    took = []

    def app(name):
        async def serve(scope, receive, send):
            took.append(name)
        return serve

    await SplitHTTP(app("api"), app("site"))({"type": "http", "path": path}, None, None)
    assert took == [handler]
