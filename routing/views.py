"""Thin async views: each names its dialect and endpoint; `routing.pipeline` does the work."""
from __future__ import annotations

import functools

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from . import model_info, ollama_request, openai_side
from .catalog import get_catalog
from .errors import MethodNotAllowed, ModelNotFound, ProxyError, error_body
from .pipeline import Endpoint, json_response, parse_body, proxy
from .registry import get_registry
from .relay import OLLAMA, OPENAI

CHAT = Endpoint("/api/chat", OLLAMA, "/v1/chat/completions", ollama_request.chat_to_openai, "chat")
GENERATE = Endpoint("/api/generate", OLLAMA, "/v1/chat/completions", ollama_request.generate_to_openai,
                    "generate")
V1_CHAT = Endpoint("/v1/chat/completions", OPENAI, "/v1/chat/completions", openai_side.check_chat)
V1_COMPLETIONS = Endpoint("/v1/completions", OPENAI, "/v1/completions", openai_side.check_completion)


def api_view(methods: list[str], dialect: str = "ollama"):
    """An async API view: CSRF-exempt (API clients carry no cookies), method-checked, and any
    ProxyError (a wrong method too) answered in the dialect's error shape."""

    def decorate(view):
        @csrf_exempt
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs):
            try:
                if request.method not in methods:
                    raise MethodNotAllowed(request.method, request.path, methods)
                return await view(request, *args, **kwargs)
            except ProxyError as exc:
                response = json_response(error_body(exc, dialect), exc.status)
                if isinstance(exc, MethodNotAllowed):
                    response["Allow"] = ", ".join(methods)
                return response

        return wrapper

    return decorate


def proxy_view(endpoint: Endpoint):
    @api_view(["POST"], endpoint.api)
    async def view(request: HttpRequest):
        return await proxy(request, endpoint)

    return view


chat = proxy_view(CHAT)
generate = proxy_view(GENERATE)
v1_chat = proxy_view(V1_CHAT)
v1_completions = proxy_view(V1_COMPLETIONS)


@api_view(["GET", "HEAD"])
async def root(request: HttpRequest):
    return HttpResponse("Ollama is running", content_type="text/plain; charset=utf-8")


@api_view(["GET", "HEAD"])
async def version(request: HttpRequest):
    return json_response({"version": settings.OLLAMA_VERSION})


@api_view(["GET", "HEAD"])
async def tags(request: HttpRequest):
    table = get_registry().table()
    lm_models = await _lm_models_or_empty()
    return json_response(model_info.tags(table, lm_models))


@api_view(["POST"])
async def show(request: HttpRequest):
    body = parse_body(request)
    requested = ollama_request.require_model(body)
    route = get_registry().table().resolve(requested)
    if route is None:
        raise ModelNotFound(requested)
    lm = await get_catalog().get(route.model)
    if lm is None and route.alias is None:
        raise ModelNotFound(requested)  # a pass-through name LM Studio does not have
    return json_response(model_info.show(requested, route.model, route.alias, lm))


@api_view(["GET"], "openai")
async def v1_models(request: HttpRequest):
    table = get_registry().table()
    return json_response(model_info.openai_models(table, await _lm_models_or_empty()))


async def _lm_models_or_empty():
    """LM Studio's models, or none when it is unreachable: the aliases are still worth listing."""
    try:
        return await get_catalog().models()
    except ProxyError:
        return {}
