"""The one request pipeline: parse -> resolve alias -> apply overrides -> call upstream -> relay -> log.

An `Endpoint` names what differs between endpoints (the dialect, how to translate the body, which
LM Studio path, how to translate the answer); `proxy` does the rest, the same way for all of them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from routing.config.overrides import apply_route
from routing.config.table import Route, RouteTable
from routing.core.errors import Forbidden, ModelNotFound, ProxyError, error_body
from routing.core.exchange import Exchange, Timing
from routing.core.responses import json_response
from routing.dialects.base import Dialect, Translator, require_model, strict_bool
from routing.dialects.ollama import lifecycle_answer
from routing.lmstudio import loading
from routing.lmstudio.backends import BackendPool
from routing.proxy.bodies import read_json_object
from routing.proxy.relay import record_answer, relay
from routing.proxy.state import AppState, current
from routing.security.access import presented_key
from routing.security.clients import client_of
from routing.security.keys import KeyGrant


def no_client_ttl(body: dict) -> tuple[bool, int | None]:
    return False, None


@dataclass(frozen=True)
class Endpoint:
    """What one API endpoint is: its dialect, how its requests become LM Studio's, where they go, and
    how the answers come back. Everything else is the same pipeline for every endpoint."""

    path: str                            # the client-facing path, for the log
    dialect: Dialect
    upstream_path: str | Callable[[dict], str]  # or a function of the built body
    build: Callable[[dict], dict]        # client body -> OpenAI-shaped body (route not applied yet)
    # (client's model name, client body) -> the stream translator; None for one-answer endpoints
    translator: Callable[[str, dict], Translator] | None = None
    kind: str = "chat"                   # "chat" | "generate" | "embed" (embeddings get no sampling overrides)
    # For endpoints answered in one JSON object, never streamed (embeddings):
    # (LM Studio's answer, client body, client's model name, timing) -> the client's answer.
    answer: Callable[[dict, dict, str, Timing], dict] | None = None
    # (whether the client asked for a TTL, the LM Studio ttl it means) from the client body
    client_ttl: Callable[[dict], tuple[bool, int | None]] = no_client_ttl
    # Ollama's empty requests: client body -> "load" | "unload" | None (an ordinary request)
    lifecycle: Callable[[dict], str | None] | None = None

    @property
    def api(self) -> str:
        return self.dialect.name

    def target(self, built: dict) -> str:
        """The LM Studio path for a built request body."""
        return self.upstream_path(built) if callable(self.upstream_path) else self.upstream_path


def parse_body(request: HttpRequest) -> dict:
    """The request's JSON object body, checked (`routing.proxy.bodies`)."""
    return read_json_object(request)


async def resolve_route(pool: BackendPool, table: RouteTable, requested: str) -> Route:
    """The route for a model name, or ModelNotFound. LM Studio's (cached) model list is consulted only
    when a fallback alias must decide between passing a name through and serving it itself."""
    route = table.resolve(requested)
    if route is not None and route.via == "passthrough" and table.defaults.fallback:
        try:
            upstream_models = await pool.models_everywhere(table)
        except ProxyError:
            upstream_models = None
        route = table.resolve(requested, upstream_models)
    if route is None:
        raise ModelNotFound(requested)
    return route


def refuse_outside_scope(grant: KeyGrant | None, requested: str):
    """A key scoped to some models may use no other, whatever would serve the name (alias, pattern,
    pass-through or fallback): decided on the name asked for, before it is resolved."""
    if grant is not None and not grant.allows(requested):
        raise Forbidden(f"the API key {grant.name!r} may not use the model {requested!r}")


def begin_exchange(request: HttpRequest, api: str, path: str) -> Exchange:
    """The record of a request to `path` by a client of the `api` dialect."""
    grant = getattr(request, "api_key", None)  # set by the access middleware
    return Exchange(api=api, endpoint=path, client=client_of(request.META.get("REMOTE_ADDR", ""), request.headers),
                    key_name=grant.name if grant else "", grant=grant,
                    own_secrets=(presented_key(request.headers),) if grant and grant.hash else (),
                    user_agent=request.META.get("HTTP_USER_AGENT", "")[:300])


async def proxy(request: HttpRequest, endpoint: Endpoint) -> HttpResponse:
    """Serve one model request end to end; every outcome is recorded once (a streamed answer by the
    relay, when the stream ends)."""
    state = current()
    exchange = begin_exchange(request, endpoint.api, endpoint.path)
    try:
        with state.observers.recording(exchange) as recording:
            response = await _proxy(state, request, endpoint, exchange)
            if response.streaming:
                recording.hand_over()
            return response
    except ProxyError as exc:
        response = json_response(error_body(exc, endpoint.api), exc.status, exchange.id)
        for name, value in exc.headers().items():
            response[name] = value
        return response


async def _proxy(state: AppState, request: HttpRequest, endpoint: Endpoint,
                 exchange: Exchange) -> HttpResponse:
    body = parse_body(request)
    exchange.request_body = body
    requested = exchange.requested_model = require_model(body)  # recorded, even when refused below
    refuse_outside_scope(exchange.grant, requested)
    await state.limits.admit(exchange)  # after the scope: a refused model uses none of the key's limits
    table = await state.registry.table()
    route = await resolve_route(state.pool, table, requested)
    exchange.upstream_model = route.model
    exchange.alias = route.alias.name if route.alias else ""

    stream = strict_bool(body, "stream", endpoint.dialect.stream_by_default) and endpoint.answer is None
    ttl_sent, ttl = endpoint.client_ttl(body)
    action = endpoint.lifecycle(body) if endpoint.lifecycle else None
    if action:
        return await _lifecycle(state, action, table, route, requested, endpoint, exchange, (ttl_sent, ttl))
    upstream_body = apply_route(endpoint.build(body), route, table.defaults, ttl, ttl_sent,
                                sampling=endpoint.kind != "embed")
    exchange.stream, exchange.ttl = stream, upstream_body.get("ttl")
    exchange.upstream_body = upstream_body
    path = endpoint.target(upstream_body)
    upstream_body = await state.loader.apply(table, route, upstream_body, exchange)
    upstream, response = await state.pool.open(state.admission, table, route, exchange, "POST", path,
                                               upstream_body, model=requested)
    if endpoint.answer is not None:
        return await _one_answer(endpoint, body, await upstream.read_json(response, path), requested,
                                 exchange)
    return await _generation(state, endpoint, body, upstream.events(response), requested, stream, exchange)


async def _one_answer(endpoint: Endpoint, body: dict, answer: dict, requested: str,
                      exchange: Exchange) -> HttpResponse:
    """An endpoint answered with one JSON object (embeddings): LM Studio's answer, translated."""
    exchange.timing.stop()
    exchange.prompt_tokens = (answer.get("usage") or {}).get("prompt_tokens")
    return json_response(endpoint.answer(answer, body, requested, exchange.timing), request_id=exchange.id)


async def _generation(state: AppState, endpoint: Endpoint, body: dict, events, requested: str,
                      stream: bool, exchange: Exchange) -> HttpResponse:
    """A chat or completion: LM Studio's stream relayed as it comes, or assembled into one answer."""
    translator = endpoint.translator(requested, body)
    if not stream:
        return await _whole(events, translator, exchange)
    # Read the first events before answering, so a failure to start is a JSON error, not a broken
    # stream; they go out with the head, in one write.
    try:
        await events.started()
    except BaseException:
        await events.aclose()
        raise
    streaming = StreamingHttpResponse(relay(events, translator, endpoint.dialect, exchange, state),
                                      content_type=endpoint.dialect.content_type)
    streaming["X-Request-Id"] = exchange.id
    streaming["Cache-Control"] = "no-cache"
    return streaming


async def _lifecycle(state: AppState, action: str, table: RouteTable, route: Route, requested: str,
                     endpoint: Endpoint, exchange: Exchange, ttls: tuple) -> HttpResponse:
    """Ollama's empty chat/generate: load the model (with the TTL a request would give it) or unload it,
    on the backend a request for it would try first.

    Ollama answers these with one JSON object, streamed or not. (Only Ollama's endpoints have a
    `lifecycle`.)
    """
    backend = await loading.backend_for(state.pool, table, route, requested)
    exchange.backend = backend.name
    if action == "unload":
        unloaded = await loading.unload(backend, route.model, state.loader)
        exchange.response_text = f"unloaded: {', '.join(unloaded) or 'nothing'}"
    else:
        ttl_sent, ttl = ttls
        embedding = await loading.is_embedding_model(route.model, backend.catalog)
        path, body = loading.load_request(route.model, embedding)
        # the alias's model and TTL; its options (num_predict...) must not lengthen the minimal request
        body = apply_route(body, route, table.defaults, ttl, ttl_sent, sampling=False)
        exchange.upstream_body, exchange.ttl = body, body.get("ttl")
        loaded = await state.loader.warm_up(table, route, exchange) or await loading.load(
            path, body, requested, backend.upstream, backend.catalog)
        exchange.response_text = "loaded" if loaded else "already loaded"
    exchange.timing.stop()
    return json_response(lifecycle_answer(requested, endpoint.kind, action), request_id=exchange.id)


async def _whole(events, translator: Translator, exchange: Exchange) -> HttpResponse:
    """A non-streamed answer: the upstream answer (or stream) assembled into one response."""
    try:
        async for event in events:
            if translator.feed(event):
                exchange.timing.mark_first_token()
    finally:
        await events.aclose()  # on any failure too: LM Studio stops generating
    exchange.timing.stop()
    record_answer(exchange, translator.answer)
    return json_response(translator.whole(exchange.timing), request_id=exchange.id)
