"""Writing a route table back as routes.yaml text: the inverse of `routing.config.loader.load_routes`.

Generic over the dataclasses' fields, so a field added to `RouteAlias` or `Defaults` is written without a
change here; values equal to their defaults are left out, and an alias that is only a model id uses
the short form (`chat: llama-3.2-1b-instruct`).
"""
from __future__ import annotations

from dataclasses import MISSING, fields
from typing import Any, Mapping

import yaml

from routing.config.durations import format_duration
from routing.config.table import RouteAlias, RouteTable

_NOT_WRITTEN = {"name", "source"}  # the alias's key, and where it came from


def _default(spec) -> Any:
    if spec.default is not MISSING:
        return spec.default
    return spec.default_factory() if spec.default_factory is not MISSING else MISSING


def _changed_fields(item, always: tuple[str, ...] = ()) -> dict[str, Any]:
    """The dataclass's fields that differ from their defaults, as YAML values."""
    out = {}
    for spec in fields(item):
        value = getattr(item, spec.name)
        if spec.name in _NOT_WRITTEN or (spec.name not in always and value == _default(spec)):
            continue
        if spec.name == "ttl":
            value = format_duration(value)
        if hasattr(value, "to_yaml"):  # an alias's download
            value = value.to_yaml()
        if isinstance(value, tuple):  # backends, an alias's messages
            value = [v.to_yaml() if hasattr(v, "to_yaml") else v for v in value]
        out[spec.name] = dict(value) if isinstance(value, Mapping) else value
    return out


def alias_spec(alias: RouteAlias) -> dict | str:
    """An alias as routes.yaml writes it: the short form when it is only a model id."""
    spec = _changed_fields(alias, always=("model",))
    return alias.model if list(spec) == ["model"] else spec


def dump_routes(table: RouteTable, header: str = "") -> str:
    """The table as routes.yaml text that `load_routes` reads back into an equal table."""
    document: dict[str, Any] = {"defaults": _changed_fields(table.defaults, always=("passthrough",)),
                                "aliases": {name: alias_spec(a) for name, a in table.aliases.items()}}
    if getattr(table, "backends", None):
        document = {"backends": {name: {"url": b.url, **({"api_key": b.api_key} if b.api_key else {})}
                                 for name, b in table.backends.items()}, **document}
    # Declared endpoints exist on tables that have them (routes.yaml's `endpoints:`).
    endpoints = getattr(table, "endpoints", ())
    if endpoints:
        document["endpoints"] = [{"method": e.method, "path": e.path, "status": e.status, "json": e.body}
                                 for e in endpoints]
    text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return "".join(f"# {line}\n" for line in header.splitlines()) + text
