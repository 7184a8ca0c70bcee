"""Thin async views for model requests: each names its dialect and endpoint; `routing.pipeline` does
the work. Model listing and management views are in `routing.model_views`."""
from __future__ import annotations

import functools

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from . import embeddings, ollama_request, openai_side
from .errors import ProxyError, error_body
from .pipeline import Endpoint, json_response, proxy
from .relay import OLLAMA, OPENAI

CHAT = Endpoint("/api/chat", OLLAMA, "/v1/chat/completions", ollama_request.chat_to_openai, "chat")
GENERATE = Endpoint("/api/generate", OLLAMA, ollama_request.generate_upstream_path,
                    ollama_request.generate_to_openai, "generate")
EMBED = Endpoint("/api/embed", OLLAMA, "/v1/embeddings", embeddings.embed_request, "embed",
                 embeddings.embed_answer)
EMBEDDINGS = Endpoint("/api/embeddings", OLLAMA, "/v1/embeddings", embeddings.legacy_embeddings_request,
                      "embed", embeddings.legacy_embeddings_answer)
V1_CHAT = Endpoint("/v1/chat/completions", OPENAI, "/v1/chat/completions", openai_side.check_chat)
V1_COMPLETIONS = Endpoint("/v1/completions", OPENAI, "/v1/completions", openai_side.check_completion)
V1_EMBEDDINGS = Endpoint("/v1/embeddings", OPENAI, "/v1/embeddings", embeddings.openai_embeddings_request,
                         "embed", embeddings.openai_embeddings_answer)


def api_view(methods: list[str], dialect: str = "ollama"):
    """An async API view: CSRF-exempt (API clients carry no cookies), method-checked, and any
    ProxyError answered in the dialect's error shape."""

    def decorate(view):
        @csrf_exempt
        @require_http_methods(methods)
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs):
            try:
                return await view(request, *args, **kwargs)
            except ProxyError as exc:
                return json_response(error_body(exc, dialect), exc.status)

        return wrapper

    return decorate


def proxy_view(endpoint: Endpoint):
    @api_view(["POST"], endpoint.api)
    async def view(request: HttpRequest):
        return await proxy(request, endpoint)

    return view


chat = proxy_view(CHAT)
generate = proxy_view(GENERATE)
embed = proxy_view(EMBED)
legacy_embeddings = proxy_view(EMBEDDINGS)
v1_chat = proxy_view(V1_CHAT)
v1_completions = proxy_view(V1_COMPLETIONS)
v1_embeddings = proxy_view(V1_EMBEDDINGS)


@api_view(["GET", "HEAD"])
async def root(request: HttpRequest):
    return HttpResponse("Ollama is running", content_type="text/plain; charset=utf-8")


@api_view(["GET", "HEAD"])
async def version(request: HttpRequest):
    return json_response({"version": settings.OLLAMA_VERSION})
