"""Loading and unloading models in LM Studio, for Ollama's empty chat/generate requests.

Loading goes through the same path as any request (a minimal one: one token, or one empty embedding),
so LM Studio's Just-In-Time loading applies the TTL exactly as for chat; `/api/v1/models/load` has no
TTL and would keep the model until it is unloaded, so it is used only when JIT loading is off. Nothing
is sent when the model is already loaded. Unloading uses `/api/v1/models/unload` (LM Studio 0.4.0+),
for every loaded instance of the model.
"""
from __future__ import annotations

from routing.config.table import Route, RouteTable
from routing.core.errors import EndpointMissing, ModelNotFound, ModelNotLoaded, NotSupported
from routing.lmstudio.backends import BackendPool, BackendState
from routing.lmstudio.catalog import ModelCatalog, capabilities, is_loaded
from routing.lmstudio.client import Upstream
from routing.lmstudio.instances import InstanceLoader


async def backend_for(pool: BackendPool, table: RouteTable, route: Route, requested: str) -> BackendState:
    """Where a load or unload of `route` goes (the backend a request for it would try first);
    ModelNotFound for a pass-through name LM Studio does not have."""
    backend = pool.first(table, route)
    if route.alias is None and await backend.catalog.get(route.model) is None:
        raise ModelNotFound(requested)
    return backend


def load_request(model_id: str, embedding: bool) -> tuple[str, dict]:
    """(LM Studio path, body) of the smallest request that makes LM Studio load `model_id`."""
    if embedding:
        return "/v1/embeddings", {"model": model_id, "input": ""}
    return "/v1/chat/completions", {"model": model_id, "messages": [{"role": "user", "content": ""}],
                                    "max_tokens": 1, "stream": False}


async def load(path: str, upstream_body: dict, requested: str, upstream: Upstream, catalog: ModelCatalog) -> bool:
    """Make LM Studio (`upstream`, whose model list is `catalog`) load `upstream_body["model"]` with the
    body's TTL; False if it was loaded already.

    (`path`, `upstream_body`) is a `load_request` with the route applied (model id, TTL).
    """
    if is_loaded(await catalog.get(upstream_body["model"])):
        return False
    try:
        await upstream.json("POST", path, upstream_body, model=requested)
    except ModelNotLoaded:  # JIT loading is off: load it explicitly, if this LM Studio can
        try:
            await upstream.json("POST", "/api/v1/models/load", {"model": upstream_body["model"]},
                                model=requested)
        except EndpointMissing:
            raise ModelNotLoaded(f"model '{requested}' is not loaded and this LM Studio neither loads "
                                 f"it on demand (JIT is off) nor has /api/v1/models/load: run "
                                 f"`lms load {upstream_body['model']}`") from None
    catalog.invalidate()
    return True


async def is_embedding_model(model_id: str, catalog: ModelCatalog) -> bool:
    return capabilities(await catalog.get(model_id)) == ["embedding"]


async def unload(backend: BackendState, model_id: str, loader: InstanceLoader) -> list[str]:
    """Unload every loaded instance of `model_id` from `backend`; returns the instance ids unloaded.
    The proxy no longer keeps a TTL for them (`loader`)."""
    try:
        native = await backend.upstream.native_models()
    except EndpointMissing:
        raise NotSupported(f"this LM Studio cannot unload models through its API (/api/v1 came with "
                           f"LM Studio 0.4.0): unload '{model_id}' in LM Studio or with "
                           f"`lms unload {model_id}`") from None
    instances = [inst["id"] for entry in native if entry.get("key") == model_id
                 for inst in entry.get("loaded_instances") or () if isinstance(inst, dict) and "id" in inst]
    for instance_id in instances:
        await backend.upstream.unload(instance_id)
        loader.forget(backend.name, instance_id)
    backend.catalog.invalidate()
    return instances
