"""Thin async views: each names its dialect and endpoint; `routing.proxy.pipeline` does the work. Model
listing views describe the route table and LM Studio's models (`routing.api.listings`); `/api/create`,
`/api/copy` and `/api/delete` edit the admin's aliases; the model management endpoints this proxy
cannot serve (push, blobs) answer with a clear error."""
from __future__ import annotations

import functools
from datetime import datetime, timezone
from typing import Mapping

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from routing.api import aliases as alias_api
from routing.api import create as create_api
from routing.api import listings as model_info
from routing.config.table import Route
from routing.core.errors import MethodNotAllowed, ModelNotFound, NotSupported, ProxyError, error_body
from routing.core.responses import json_response
from routing.dialects import anthropic, embeddings, ollama, openai_chat, responses
from routing.dialects.base import require_model
from routing.proxy.pipeline import Endpoint, parse_body, proxy, refuse_outside_scope, resolve_route
from routing.proxy.pull import answer as pull_answer
from routing.proxy.state import AppState, current
from routing.security.keys import KeyGrant

OLLAMA, OPENAI = ollama.DIALECT, openai_chat.DIALECT
CHAT = Endpoint("/api/chat", OLLAMA, "/v1/chat/completions", ollama.chat_to_openai, ollama.chat_translator,
                "chat", client_ttl=ollama.keep_alive_ttl, lifecycle=ollama.chat_lifecycle)
GENERATE = Endpoint("/api/generate", OLLAMA, ollama.generate_upstream_path, ollama.generate_to_openai,
                    ollama.generate_translator, "generate", client_ttl=ollama.keep_alive_ttl,
                    lifecycle=ollama.generate_lifecycle)
EMBED = Endpoint("/api/embed", OLLAMA, "/v1/embeddings", embeddings.embed_request, kind="embed",
                 answer=embeddings.embed_answer, client_ttl=ollama.keep_alive_ttl)
EMBEDDINGS = Endpoint("/api/embeddings", OLLAMA, "/v1/embeddings", embeddings.legacy_embeddings_request,
                      kind="embed", answer=embeddings.legacy_embeddings_answer, client_ttl=ollama.keep_alive_ttl)
V1_CHAT = Endpoint("/v1/chat/completions", OPENAI, "/v1/chat/completions", openai_chat.check_chat,
                   openai_chat.translator, client_ttl=openai_chat.client_ttl)
V1_COMPLETIONS = Endpoint("/v1/completions", OPENAI, "/v1/completions", openai_chat.check_completion,
                          openai_chat.translator, client_ttl=openai_chat.client_ttl)
V1_EMBEDDINGS = Endpoint("/v1/embeddings", OPENAI, "/v1/embeddings", embeddings.openai_embeddings_request,
                         kind="embed", answer=embeddings.openai_embeddings_answer,
                         client_ttl=openai_chat.client_ttl)
V1_RESPONSES = Endpoint("/v1/responses", responses.DIALECT, "/v1/chat/completions", responses.to_openai,
                        responses.translator)
V1_MESSAGES = Endpoint("/v1/messages", anthropic.DIALECT, "/v1/chat/completions", anthropic.to_openai,
                       anthropic.translator)


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
embed = proxy_view(EMBED)
legacy_embeddings = proxy_view(EMBEDDINGS)
v1_chat = proxy_view(V1_CHAT)
v1_completions = proxy_view(V1_COMPLETIONS)
v1_embeddings = proxy_view(V1_EMBEDDINGS)
v1_responses = proxy_view(V1_RESPONSES)
v1_messages = proxy_view(V1_MESSAGES)


@api_view(["GET", "HEAD"])
async def root(request: HttpRequest):
    return HttpResponse("Ollama is running", content_type="text/plain; charset=utf-8")


@api_view(["GET", "HEAD"])
async def version(request: HttpRequest):
    return json_response({"version": settings.OLLAMA_VERSION})


@api_view(["GET", "HEAD"])
async def tags(request: HttpRequest):
    state = current()
    table = await state.registry.table()
    lm_models = await _lm_models_or_empty(state, table)
    listed = model_info.tags(table, lm_models)
    return json_response({**listed, "models": in_scope(request, listed["models"], "name")})


@api_view(["POST"])
async def show(request: HttpRequest):
    requested = require_model(parse_body(request))
    refuse_outside_scope(key_of(request), requested)
    state = current()
    route, lm = await known_model(state, requested)
    defaults = (await state.registry.table()).defaults
    return json_response(model_info.show(requested, route.model, route.alias, lm, defaults))


@api_view(["POST"])
async def copy(request: HttpRequest):
    await alias_api.copy_alias(parse_body(request))
    return HttpResponse(status=200)


@api_view(["DELETE"])
async def delete(request: HttpRequest):
    await alias_api.delete_alias(parse_body(request))
    return HttpResponse(status=200)


@api_view(["GET"], "openai")
async def v1_models(request: HttpRequest):
    state = current()
    table = await state.registry.table()
    listed = model_info.openai_models(table, await _lm_models_or_empty(state, table))
    return json_response({**listed, "data": in_scope(request, listed["data"], "id")})


def key_of(request: HttpRequest) -> KeyGrant | None:
    return getattr(request, "api_key", None)  # set by the access middleware (routing.api.access)


def in_scope(request: HttpRequest, entries: list[dict], name_field: str) -> list[dict]:
    """The model list entries the request's key may use (a scoped key sees only those)."""
    grant = key_of(request)
    return entries if grant is None or not grant.scope else [e for e in entries if grant.allows(e[name_field])]


async def _lm_models_or_empty(state: AppState, table) -> Mapping[str, dict]:
    """The models of every LM Studio backend, or none when none is reachable: the aliases are still
    worth listing."""
    try:
        return await state.pool.models_everywhere(table)
    except ProxyError:
        return {}


async def known_model(state: AppState, requested: str) -> tuple[Route, dict | None]:
    """The route for a model name and LM Studio's description of its model; ModelNotFound for a
    name that is neither an alias nor (when names pass through) a model LM Studio has."""
    table = await state.registry.table()
    route = await resolve_route(state.pool, table, requested)
    if route.alias is not None:  # an alias can be described even while LM Studio is away
        return route, (await _lm_models_or_empty(state, table)).get(route.model)
    lm = (await state.pool.models_everywhere(table)).get(route.model)  # unreachable: a 502, not a false 404
    if lm is None:
        raise ModelNotFound(requested)
    return route, lm


@api_view(["GET", "HEAD"])
async def ps(request: HttpRequest):
    """The loaded models of every backend, each entry with the `backend` that holds it."""
    state = current()
    table = await state.registry.table()
    try:
        by_backend = await state.pool.models_by_backend(table.backends)
    except ProxyError:
        by_backend = {}
    now = datetime.now(timezone.utc)
    return json_response({"models": in_scope(request, [
        {**entry, "backend": name} for name, lm_models in by_backend.items()
        for entry in model_info.running(table, lm_models, now, state.loader.records(name))["models"]], "name")})


@api_view(["GET"], "openai")
async def v1_model(request: HttpRequest, model_id: str):
    refuse_outside_scope(key_of(request), model_id)
    await known_model(current(), model_id)
    return json_response(model_info.openai_model(model_id))


@api_view(["POST"])
async def pull(request: HttpRequest):
    """`ollama pull`: downloads into LM Studio with Ollama's progress lines (routing.proxy.pull)."""
    return await pull_answer(request)


@api_view(["POST"])
async def push(request: HttpRequest):
    raise NotSupported("pushing models is not supported: this proxy serves LM Studio's models and has "
                       "no registry to push to")


@api_view(["POST"])
async def create(request: HttpRequest):
    """`ollama create`: an alias from a Modelfile or its JSON form (routing.api.create)."""
    return await create_api.answer(request)


@api_view(["HEAD", "POST"])
async def blob(request: HttpRequest, digest: str):
    if request.method == "HEAD":
        return HttpResponse(status=404)  # true: this proxy holds no blobs
    raise NotSupported("uploading blobs is not supported: LM Studio cannot build models from files; "
                       "`ollama create` makes an alias FROM an LM Studio model, an alias or a download")
