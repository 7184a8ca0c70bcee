"""Ollama's `/api/copy` and `/api/delete` on aliases: they edit the admin's store, never routes.yaml.

`copy` stores an admin alias named `destination` with the settings of whatever `source` resolves to
(an alias, or a pass-through LM Studio id). `delete` removes an admin alias; an alias that lives only in
routes.yaml cannot be deleted through the API. Neither is on the proxy's hot path.
"""
from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.db import transaction

from routing.config import table
from routing.core.errors import BadRequest, Conflict, ModelNotFound
from routing.lmstudio import loading
from routing.models import Alias
from routing.proxy.state import AppState, current


def _required_name(body: dict, *keys: str) -> str:
    value = next((body[k] for k in keys if body.get(k) is not None), None)
    if value is None:
        raise BadRequest(f"{keys[0]} is required")
    if not isinstance(value, str) or not table.normalize_name(value):
        raise BadRequest(f"{keys[0]} must be a non-empty string")
    return value


async def copy_alias(body: dict) -> table.RouteAlias:
    """Store `destination` as an admin alias copying `source`'s route; returns the new alias."""
    source = _required_name(body, "source")
    destination = _required_name(body, "destination")
    state = current()
    route_table = await state.registry.table()
    route = route_table.resolve(source)
    if route is None or route.via == "fallback":  # copy what the name is, not what stands in for it
        raise ModelNotFound(source)
    if route.alias is None and route.model not in await state.pool.models_everywhere(route_table):
        raise ModelNotFound(source)  # a pass-through name LM Studio does not have
    template = route.alias or table.RouteAlias(name=source, model=route.model)
    return await sync_to_async(_store_copy)(template, destination)


def _store_copy(template: table.RouteAlias, destination: str) -> table.RouteAlias:
    name = table.normalize_name(destination)
    with transaction.atomic():
        copied = Alias.objects.filter(name=name).first() or Alias(name=name)
        copied.copy_settings(template)
        copied.description = f"copied from {template.name}"
        try:
            copied.full_clean()
        except ValidationError as exc:
            raise BadRequest("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs
                                       in exc.message_dict.items())) from None
        copied.save()
    return copied.to_route_alias()


async def delete_alias(body: dict) -> str:
    """Delete the admin alias `model` (or `name`), or unload one of LM Studio's own models; returns
    the normalised name."""
    requested = _required_name(body, "model", "name")
    name = table.normalize_name(requested)
    deleted = await sync_to_async(_delete_stored)(name)
    if deleted:
        return name
    state = current()
    registry = state.registry
    if name in registry.file_table().aliases:
        raise Conflict(f"alias '{name}' is defined in {registry.path.name} ({registry.path}); "
                       "it cannot be deleted through the API: remove it from that file")
    await _unload_lmstudio_model(state, await registry.table(), requested)
    return name


async def _unload_lmstudio_model(state: AppState, route_table: table.RouteTable, requested: str):
    """`ollama rm` of one of LM Studio's own models (a pass-through name): the proxy cannot delete
    LM Studio's files, so it frees the model's memory instead: every loaded instance is unloaded."""
    route = route_table.resolve(requested)
    if route is None or route.via != "passthrough":
        raise ModelNotFound(requested)
    backend = await loading.backend_for(state.pool, route_table, route, requested)
    await loading.unload(backend, route.model, state.loader)


def _delete_stored(name: str) -> bool:
    deleted, _ = Alias.objects.filter(name=name).delete()
    return deleted > 0
