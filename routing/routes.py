"""The route table: aliases from `routes.yaml` loaded into frozen data, validated, and resolved.

`load_routes(stream, source)` is the only way in. Everything it returns is immutable; reloading builds a
new table and swaps it (see `routing.registry`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping

import yaml

from .durations import parse_duration, ttl_seconds

SYSTEM_MODES = ("prepend", "replace", "default")

# Ollama's Modelfile parameters (api/types.go `Options` and `Runner`); anything else is a typo.
OLLAMA_OPTIONS = frozenset(
    """num_keep seed num_predict top_k top_p min_p typical_p repeat_last_n temperature repeat_penalty
    presence_penalty frequency_penalty penalize_newline stop numa num_ctx num_batch num_gpu main_gpu
    low_vram use_mmap use_mlock num_thread tfs_z mirostat mirostat_tau mirostat_eta""".split()
)

_ALIAS_KEYS = {"model", "ttl", "temperature", "system", "system_mode", "options"}
_DEFAULT_KEYS = {"ttl", "passthrough"}
_TOP_KEYS = {"defaults", "aliases"}


class RouteTableError(ValueError):
    """A route table that cannot be used; `str()` is one line: `file:line: what is wrong`."""

    def __init__(self, message: str, source: str = "routes.yaml", line: int | None = None,
                 key: str | None = None):
        # `key` names the alias field at fault, so a form can put the message beside that field.
        self.message, self.source, self.line, self.key = message, source, line, key
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")


def normalize_name(name: str) -> str:
    """Ollama treats `x` and `x:latest` as the same model."""
    name = name.strip()
    return name[: -len(":latest")] if name.endswith(":latest") else name


@dataclass(frozen=True)
class Alias:
    name: str
    model: str
    ttl: int | None = None
    temperature: float | None = None
    system: str | None = None
    system_mode: str = "prepend"
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: str = "file"


@dataclass(frozen=True)
class Defaults:
    ttl: int | None = None
    passthrough: bool = True


@dataclass(frozen=True)
class Route:
    """What a requested model name resolved to."""

    requested: str
    model: str
    alias: Alias | None = None

    def ttl(self, defaults: Defaults) -> int | None:
        if self.alias and self.alias.ttl is not None:
            return self.alias.ttl
        return defaults.ttl


@dataclass(frozen=True)
class RouteTable:
    defaults: Defaults = Defaults()
    aliases: Mapping[str, Alias] = field(default_factory=lambda: MappingProxyType({}))

    def resolve(self, requested: str) -> Route | None:
        """The route for a client's model name, or None when nothing serves it."""
        name = normalize_name(requested)
        alias = self.aliases.get(name)
        if alias is not None:
            return Route(requested=requested, model=alias.model, alias=alias)
        if self.defaults.passthrough and name:
            return Route(requested=requested, model=name)
        return None

    def with_aliases(self, extra: Iterable[Alias]) -> RouteTable:
        """A new table where `extra` aliases replace same-named ones (admin edits win over the file)."""
        merged = dict(self.aliases)
        merged.update({a.name: a for a in extra})
        return replace(self, aliases=MappingProxyType(merged))


# --- Loading -----------------------------------------------------------------------------------


class _LineLoader(yaml.SafeLoader):
    """A SafeLoader whose mappings remember the line of each key and refuse duplicate keys."""


class _LineDict(dict):
    line: int = 0
    key_lines: dict


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode):
    data = _LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        if not isinstance(key, str):
            raise RouteTableError(f"keys must be strings, got {key!r}", loader.name, line)
        if key in data:
            raise RouteTableError(f"duplicate key '{key}' (first on line {data.key_lines[key]})",
                                  loader.name, line)
        data[key] = loader.construct_object(value_node, deep=True)
        data.key_lines[key] = line


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_routes(stream, source: str = "routes.yaml") -> RouteTable:
    """Parse and validate a route table from a text stream; raises RouteTableError naming the line."""
    loader = _LineLoader(stream)
    loader.name = source
    try:
        document = loader.get_single_data()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise RouteTableError(f"invalid YAML: {exc.problem}", source,
                              mark.line + 1 if mark else None) from None
    except yaml.YAMLError as exc:
        raise RouteTableError(f"invalid YAML: {exc}", source) from None
    finally:
        loader.dispose()
    if document is None:
        return RouteTable()
    return _Validator(source).table(document)


class _Validator:
    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str, line: int | None):
        raise RouteTableError(message, self.source, line)

    def mapping(self, value, what: str, line: int | None) -> _LineDict:
        if not isinstance(value, dict):
            self.fail(f"{what} must be a mapping, got {type(value).__name__}", line)
        return value

    def check_keys(self, data: _LineDict, allowed: set, what: str):
        for key in data:
            if key not in allowed:
                self.fail(f"{what}: unknown key '{key}' (allowed: {', '.join(sorted(allowed))})",
                          data.key_lines[key])

    def table(self, document) -> RouteTable:
        top = self.mapping(document, "the file", 1)
        self.check_keys(top, _TOP_KEYS, "top level")
        defaults = self.defaults(top.get("defaults"), top.key_lines.get("defaults"))
        raw_aliases = top.get("aliases")
        if raw_aliases is None:
            return RouteTable(defaults=defaults)
        raw_aliases = self.mapping(raw_aliases, "aliases", top.key_lines["aliases"])
        aliases: dict[str, Alias] = {}
        first_line: dict[str, int] = {}
        for name, spec in raw_aliases.items():
            line = raw_aliases.key_lines[name]
            alias = self.alias(name, spec, line)
            if alias.name in aliases:
                self.fail(f"alias '{name}' is the same as '{alias.name}' on line "
                          f"{first_line[alias.name]} (':latest' is implied)", line)
            aliases[alias.name], first_line[alias.name] = alias, line
        return RouteTable(defaults=defaults, aliases=MappingProxyType(aliases))

    def defaults(self, value, line: int | None) -> Defaults:
        if value is None:
            return Defaults()
        data = self.mapping(value, "defaults", line)
        self.check_keys(data, _DEFAULT_KEYS, "defaults")
        passthrough = data.get("passthrough", True)
        if not isinstance(passthrough, bool):
            self.fail("defaults: 'passthrough' must be true or false", data.key_lines["passthrough"])
        ttl = self.ttl(data, "defaults")
        return Defaults(ttl=ttl, passthrough=passthrough)

    def ttl(self, data: _LineDict, what: str) -> int | None:
        if data.get("ttl") is None:
            return None
        try:
            return ttl_seconds(parse_duration(data["ttl"]))
        except ValueError as exc:
            self.fail(f"{what}: bad 'ttl': {exc}", data.key_lines["ttl"])

    def alias(self, name: str, spec, line: int) -> Alias:
        what = f"alias '{name}'"
        if not name.strip():
            self.fail("alias names must not be empty", line)
        if isinstance(spec, str):  # shorthand: `coder: qwen2.5-7b-instruct`
            return Alias(name=normalize_name(name), model=spec)
        data = self.mapping(spec, what, line)
        self.check_keys(data, _ALIAS_KEYS, what)
        model = data.get("model")
        if not isinstance(model, str) or not model.strip():
            self.fail(f"{what}: 'model' (the LM Studio model id) is required", data.line)
        fields = alias_fields(data, self.source, data.key_lines, what)
        return Alias(name=normalize_name(name), model=model.strip(), ttl=self.ttl(data, what), **fields)


def alias_fields(data: Mapping, source: str, lines: Mapping[str, int], what: str) -> dict:
    """Validate an alias's overrides (temperature, system, system_mode, options).

    Shared by the YAML loader and any other editor of aliases, so they validate alike.
    """

    def fail(message: str, key: str):
        raise RouteTableError(f"{what}: {message}", source, lines.get(key), key)

    temperature = data.get("temperature")
    if temperature is not None:
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
            fail(f"'temperature' must be a number, got {temperature!r}", "temperature")
        if not (0 <= temperature <= 2) or math.isnan(temperature):
            fail(f"'temperature' must be between 0 and 2, got {temperature}", "temperature")
        temperature = float(temperature)
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        fail("'system' must be a string", "system")
    system_mode = data.get("system_mode", "prepend")
    if system_mode not in SYSTEM_MODES:
        fail(f"'system_mode' must be one of {', '.join(SYSTEM_MODES)}, got {system_mode!r}",
             "system_mode")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        fail("'options' must be a mapping of Ollama options", "options")
    unknown = sorted(set(options) - OLLAMA_OPTIONS)
    if unknown:
        fail(f"unknown option(s) {', '.join(map(str, unknown))} in 'options'", "options")
    return {"temperature": temperature, "system": system, "system_mode": system_mode,
            "options": MappingProxyType(dict(options))}
