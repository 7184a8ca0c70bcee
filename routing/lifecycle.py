"""Loading and unloading models in LM Studio, for Ollama's empty chat/generate requests.

Loading goes through the same path as any request (a minimal one: one token, or one empty embedding),
so LM Studio's Just-In-Time loading applies the TTL exactly as for chat; `/api/v1/models/load` has no
TTL and would keep the model until it is unloaded, so it is used only when JIT loading is off. Nothing
is sent when the model is already loaded. Unloading uses `/api/v1/models/unload` (LM Studio 0.4.0+),
for every loaded instance of the model.
"""
from __future__ import annotations

from .backends import BackendState, catalog_of, first_backend
from .catalog import ModelCatalog, get_catalog
from .errors import EndpointMissing, ModelNotFound, ModelNotLoaded, NotSupported
from .model_info import capabilities, is_loaded
from .upstream import Upstream, get_upstream


def forget_unloaded(upstream: Upstream, instance_ids: list[str]):
    """The proxy no longer keeps a TTL for instances unloaded on purpose."""
    from .backends import get_pool
    from .instances import get_loader

    for state in get_pool().states.values():
        if state.upstream is upstream:
            for instance_id in instance_ids:
                get_loader().forget(state.name, instance_id)


async def backend_for(table, route, requested: str) -> tuple[BackendState, ModelCatalog]:
    """Where a load or unload of `route` goes (the backend a request for it would try first) and that
    backend's model list; ModelNotFound for a pass-through name LM Studio does not have."""
    backend = first_backend(table, route)
    catalog = catalog_of(backend)
    if route.alias is None and await catalog.get(route.model) is None:
        raise ModelNotFound(requested)
    return backend, catalog


def load_request(model_id: str, embedding: bool) -> tuple[str, dict]:
    """(LM Studio path, body) of the smallest request that makes LM Studio load `model_id`."""
    if embedding:
        return "/v1/embeddings", {"model": model_id, "input": ""}
    return "/v1/chat/completions", {"model": model_id, "messages": [{"role": "user", "content": ""}],
                                    "max_tokens": 1, "stream": False}


async def load(path: str, upstream_body: dict, requested: str, upstream: Upstream | None = None,
               catalog: ModelCatalog | None = None) -> bool:
    """Make LM Studio (`upstream`, whose model list is `catalog`; the default backend's when not given)
    load `upstream_body["model"]` with the body's TTL; False if it was loaded already.

    (`path`, `upstream_body`) is a `load_request` with the route applied (model id, TTL).
    """
    upstream, catalog = upstream or get_upstream(), catalog or get_catalog()
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


async def is_embedding_model(model_id: str, catalog: ModelCatalog | None = None) -> bool:
    return capabilities(await (catalog or get_catalog()).get(model_id)) == ["embedding"]


async def unload(model_id: str, upstream: Upstream | None = None,
                 catalog: ModelCatalog | None = None) -> list[str]:
    """Unload every loaded instance of `model_id` from `upstream` (the default backend when not
    given); returns the instance ids unloaded."""
    upstream, catalog = upstream or get_upstream(), catalog or get_catalog()
    try:
        native = await upstream.json("GET", "/api/v1/models")
    except EndpointMissing:
        raise NotSupported(f"this LM Studio cannot unload models through its API (/api/v1 came with "
                           f"LM Studio 0.4.0): unload '{model_id}' in LM Studio or with "
                           f"`lms unload {model_id}`") from None
    instances = [inst["id"] for entry in native.get("models") or ()
                 if isinstance(entry, dict) and entry.get("key") == model_id
                 for inst in entry.get("loaded_instances") or () if isinstance(inst, dict) and "id" in inst]
    for instance_id in instances:
        await upstream.json("POST", "/api/v1/models/unload", {"instance_id": instance_id})
    forget_unloaded(upstream, instances)
    catalog.invalidate()
    return instances
