"""Ollama's `/api/copy` and `/api/delete` on aliases: they edit the admin's store, never routes.yaml
(`/api/create`, in `routing.api.create`, stores through `store_alias` too).

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


def required_name(body: dict, *keys: str) -> str:
    """The first of `keys` the body has, as a non-empty name (a BadRequest naming `keys[0]`)."""
    value = next((body[k] for k in keys if body.get(k) is not None), None)
    if value is None:
        raise BadRequest(f"{keys[0]} is required")
    if not isinstance(value, str) or not table.normalize_name(value):
        raise BadRequest(f"{keys[0]} must be a non-empty string")
    return value


async def copy_alias(body: dict) -> table.RouteAlias:
    """Store `destination` as an admin alias copying `source`'s route; returns the new alias."""
    source = required_name(body, "source")
    destination = required_name(body, "destination")
    state = current()
    route_table = await state.registry.table()
    route = route_table.resolve(source)
    if route is None or route.via == "fallback":  # copy what the name is, not what stands in for it
        raise ModelNotFound(source)
    if route.alias is None and route.model not in await state.pool.models_everywhere(route_table):
        raise ModelNotFound(source)  # a pass-through name LM Studio does not have
    template = route.alias or table.RouteAlias(name=source, model=route.model)
    return await sync_to_async(store_alias)(template, destination, f"copied from {template.name}")


def checked_row(template: table.RouteAlias, destination: str, description: str) -> Alias:
    """The admin row `destination` (the stored one, or a new one) with `template`'s settings,
    validated as the admin validates it (BadRequest); not saved."""
    name = table.normalize_name(destination)
    row = Alias.objects.filter(name=name).first() or Alias(name=name)
    row.copy_settings(template)
    row.description = description
    try:
        row.full_clean()
    except ValidationError as exc:
        raise BadRequest("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs
                                   in exc.message_dict.items())) from None
    return row


def store_alias(template: table.RouteAlias, destination: str, description: str) -> table.RouteAlias:
    """Store `template`'s settings as the admin alias `destination` (replacing a stored one of that
    name; over a routes.yaml alias, an override); returns the alias as the route table has it."""
    with transaction.atomic():
        row = checked_row(template, destination, description)
        row.save()
    return row.to_route_alias()


async def delete_alias(body: dict) -> str:
    """Delete the admin alias `model` (or `name`), or unload one of LM Studio's own models; returns
    the normalised name."""
    requested = required_name(body, "model", "name")
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
