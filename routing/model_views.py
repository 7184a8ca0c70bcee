"""Views that describe and manage models: Ollama's /api/tags, /api/show, /api/ps and the model
management endpoints this proxy cannot serve (answered with a clear error), OpenAI's /v1/models."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Mapping

from django.http import HttpRequest, HttpResponse

from . import model_info, ollama_request
from .catalog import get_catalog
from .errors import ModelNotFound, NotSupported, ProxyError
from .pipeline import json_response, parse_body
from .registry import get_registry
from .routes import Route
from .views import api_view


async def _lm_models_or_empty() -> Mapping[str, dict]:
    """LM Studio's models, or none when it is unreachable: the aliases are still worth listing."""
    try:
        return await get_catalog().models()
    except ProxyError:
        return {}


async def known_model(requested: str) -> tuple[Route, dict | None]:
    """The route for a model name and LM Studio's description of its model; ModelNotFound for a
    name that is neither an alias nor (when names pass through) a model LM Studio has."""
    route = get_registry().table().resolve(requested)
    if route is None:
        raise ModelNotFound(requested)
    lm = await get_catalog().get(route.model)
    if lm is None and route.alias is None:
        raise ModelNotFound(requested)
    return route, lm


@api_view(["GET", "HEAD"])
async def tags(request: HttpRequest):
    table = get_registry().table()
    return json_response(model_info.tags(table, await _lm_models_or_empty()))


@api_view(["POST"])
async def show(request: HttpRequest):
    requested = ollama_request.require_model(parse_body(request))
    route, lm = await known_model(requested)
    return json_response(model_info.show(requested, route.model, route.alias, lm))


@api_view(["GET", "HEAD"])
async def ps(request: HttpRequest):
    table = get_registry().table()
    lm_models = await _lm_models_or_empty()
    return json_response(model_info.running(table, lm_models, datetime.now(timezone.utc)))


@api_view(["GET"], "openai")
async def v1_models(request: HttpRequest):
    table = get_registry().table()
    return json_response(model_info.openai_models(table, await _lm_models_or_empty()))


@api_view(["GET"], "openai")
async def v1_model(request: HttpRequest, model_id: str):
    await known_model(model_id)
    return json_response(model_info.openai_model(model_id))


@api_view(["POST"])
async def pull(request: HttpRequest):
    """A model that is already served needs no pull (the answer is true); anything else cannot be
    downloaded through this proxy."""
    requested = ollama_request.require_model(parse_body(request))
    try:
        await known_model(requested)
    except ModelNotFound:
        raise NotSupported(f"cannot pull '{requested}': this proxy serves LM Studio's models and cannot "
                           f"download any; download it in LM Studio (or `lms get`) and add an alias "
                           f"in routes.yaml") from None
    return json_response({"status": "success"})


@api_view(["POST"])
async def push(request: HttpRequest):
    raise NotSupported("pushing models is not supported: this proxy serves LM Studio's models and has "
                       "no registry to push to")


@api_view(["POST"])
async def create(request: HttpRequest):
    raise NotSupported("creating models is not supported: LM Studio cannot build models from a "
                       "Modelfile; add an alias (model, system prompt, options) in routes.yaml instead")


@api_view(["HEAD", "POST"])
async def blob(request: HttpRequest, digest: str):
    if request.method == "HEAD":
        return HttpResponse(status=404)  # true: this proxy holds no blobs
    raise NotSupported("uploading blobs is not supported: this proxy cannot create models")
