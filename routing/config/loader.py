"""Loading `routes.yaml`: parsed with line numbers, validated, and built into a `RouteTable`.

`load_routes(stream, source)` is the only way in; the data it builds lives in `routing.config.table` (and is
re-exported here). `alias_fields` is the validation every editor of aliases shares.
"""
from __future__ import annotations

import math
from types import MappingProxyType
from typing import Iterable, Mapping

import yaml

from routing.config.downloads import download_field
from routing.config.durations import parse_duration, ttl_seconds
from routing.config.load_settings import FIELDS as LOAD_FIELDS
from routing.config.load_settings import load_fields
from routing.config.messages import license_field, messages_field
from routing.config.table import (
    DEFAULT_BACKEND,
    POLICIES,
    Defaults,
    RouteAlias,
    RouteBackend,
    RouteEndpoint,
    RouteTable,
)
from routing.core.names import normalize_name
from routing.core.paths import is_reserved

SYSTEM_MODES = ("prepend", "replace", "default")
EXPOSE_MODES = ("all", "aliases", "none")
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")

# Ollama's Modelfile parameters (api/types.go `Options` and `Runner`); anything else is a typo.
OLLAMA_OPTIONS = frozenset(
    """num_keep seed num_predict top_k top_p min_p typical_p repeat_last_n temperature repeat_penalty
    presence_penalty frequency_penalty penalize_newline stop numa num_ctx num_batch num_gpu main_gpu
    low_vram use_mmap use_mlock num_thread tfs_z mirostat mirostat_tau mirostat_eta""".split()
)

_ALIAS_KEYS = {"model", "ttl", "temperature", "system", "system_mode", "options", "hidden", "backend",
               "backends", "policy", "download", "messages", "license", *LOAD_FIELDS}
_DEFAULT_KEYS = {"ttl", "passthrough", "fallback", "expose", "backends", "policy", *LOAD_FIELDS}
_TOP_KEYS = {"defaults", "aliases", "endpoints", "backends"}
_BACKEND_KEYS = {"url", "api_key"}
_ENDPOINT_KEYS = {"method", "path", "status", "json"}


class RouteTableError(ValueError):
    """A route table that cannot be used; `str()` is one line: `file:line: what is wrong`."""

    def __init__(self, message: str, source: str = "routes.yaml", line: int | None = None,
                 key: str | None = None):
        # `key` names the alias field at fault, so a form can put the message beside that field.
        self.message, self.source, self.line, self.key = message, source, line, key
        where = f"{source}:{line}" if line else source
        super().__init__(f"{where}: {message}")


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


def _plain(value):
    """YAML data without the loader's line-tracking mappings (so it can be dumped and compared)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


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
        backends = self.backends(top.get("backends"), top.key_lines.get("backends"))
        defaults = self.defaults(top.get("defaults"), top.key_lines.get("defaults"))
        if defaults.backends:
            check_backend_names(defaults.backends, backends, "defaults", self.source,
                                top["defaults"].key_lines["backends"])
        aliases = self.aliases(top.get("aliases"), top.key_lines.get("aliases"), backends)
        if defaults.fallback:
            check_fallback(defaults.fallback, aliases, "an alias of this file", self.source,
                           top["defaults"].key_lines["fallback"])
        endpoints = self.endpoints(top.get("endpoints"), top.key_lines.get("endpoints"))
        return RouteTable(defaults=defaults, aliases=MappingProxyType(aliases), endpoints=endpoints,
                          backends=MappingProxyType(backends))

    def backends(self, value, line: int | None) -> dict[str, RouteBackend]:
        if value is None:
            return {}
        raw = self.mapping(value, "backends", line)
        out = {}
        for name, spec in raw.items():
            what, line = f"backend '{name}'", raw.key_lines[name]
            if name == DEFAULT_BACKEND:
                self.fail(f"{what}: the name is taken by LMSTUDIO_URL's backend", line)
            data = self.mapping(spec, what, line)
            self.check_keys(data, _BACKEND_KEYS, what)
            out[name] = backend_fields(name, data, self.source, data.key_lines, data.line)
        return out

    def aliases(self, value, line: int | None, backends: Mapping[str, RouteBackend]) -> dict[str, RouteAlias]:
        if value is None:
            return {}
        raw = self.mapping(value, "aliases", line)
        aliases: dict[str, RouteAlias] = {}
        lines: dict[str, int] = {}
        for name, spec in raw.items():
            line = raw.key_lines[name]
            alias = self.alias(name, spec, line)
            if alias.backends:
                check_backend_names(alias.backends, backends, f"alias '{name}'", self.source,
                                    spec.key_lines.get("backends", spec.key_lines.get("backend")))
            if alias.name in aliases:
                self.fail(f"alias '{name}' is the same as '{alias.name}' on line "
                          f"{lines[alias.name]} (':latest' is implied)", line)
            aliases[alias.name], lines[alias.name] = alias, line
        self.check_pattern_ties(aliases, lines)
        return aliases

    def check_pattern_ties(self, aliases: dict[str, RouteAlias], lines: dict[str, int]):
        """Two patterns with the same literal prefix would both claim the same names."""
        seen: list[RouteAlias] = []
        for alias in aliases.values():
            other = tied_pattern(alias, seen)
            if other is not None:
                self.fail(pattern_tie_message(alias, f"'{other.name}' (line {lines[other.name]})"),
                          lines[alias.name])
            seen.append(alias)

    def endpoints(self, value, line: int | None) -> tuple[RouteEndpoint, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail("endpoints must be a list of {method, path, status, json}", line)
        declared: dict[tuple[str, str], int] = {}
        out = []
        for item in value:
            endpoint, where = self.endpoint(item, line)
            key = (endpoint.method, endpoint.path)
            if key in declared:
                self.fail(f"endpoint {endpoint.method} {endpoint.path} is declared twice (first on line "
                          f"{declared[key]})", where)
            declared[key] = where
            out.append(endpoint)
        return tuple(out)

    def endpoint(self, item, line: int | None) -> tuple[RouteEndpoint, int]:
        data = self.mapping(item, "each endpoint", line)
        self.check_keys(data, _ENDPOINT_KEYS, "endpoint")
        return endpoint_fields(data, self.source, data.line), data.line

    def defaults(self, value, line: int | None) -> Defaults:
        if value is None:
            return Defaults()
        data = self.mapping(value, "defaults", line)
        self.check_keys(data, _DEFAULT_KEYS, "defaults")
        return Defaults(ttl=self.ttl(data, "defaults"),
                        **defaults_fields(data, self.source, data.key_lines))

    def ttl(self, data: _LineDict, what: str) -> int | None:
        if data.get("ttl") is None:
            return None
        try:
            return ttl_seconds(parse_duration(data["ttl"]))
        except ValueError as exc:
            self.fail(f"{what}: bad 'ttl': {exc}", data.key_lines["ttl"])

    def alias(self, name: str, spec, line: int) -> RouteAlias:
        what = f"alias '{name}'"
        if not name.strip():
            self.fail("alias names must not be empty", line)
        if isinstance(spec, str):  # shorthand: `coder: qwen2.5-7b-instruct`
            return RouteAlias(name=normalize_name(name), model=spec)
        data = self.mapping(spec, what, line)
        self.check_keys(data, _ALIAS_KEYS, what)
        model = data.get("model")
        if not isinstance(model, str) or not model.strip():
            self.fail(f"{what}: 'model' (the LM Studio model id) is required", data.line)
        fields = alias_fields(data, self.source, data.key_lines, what)
        return RouteAlias(name=normalize_name(name), model=model.strip(), ttl=self.ttl(data, what), **fields)


def alias_fields(data: Mapping, source: str, lines: Mapping[str, int], what: str) -> dict:
    """Validate an alias's overrides (temperature, system, system_mode, options, messages, license...).

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
    hidden = data.get("hidden", False)
    if not isinstance(hidden, bool):
        fail("'hidden' must be true or false", "hidden")
    options = data.get("options") or {}
    if not isinstance(options, dict):
        fail("'options' must be a mapping of Ollama options", "options")
    unknown = sorted(set(options) - OLLAMA_OPTIONS)
    if unknown:
        fail(f"unknown option(s) {', '.join(map(str, unknown))} in 'options'", "options")
    return {"temperature": temperature, "system": system, "system_mode": system_mode,
            "options": MappingProxyType(_plain(dict(options))), "hidden": hidden,
            **backend_choice(data, fail), **download_field(data, fail), **load_fields(data, fail),
            **messages_field(data, fail), **license_field(data, fail)}


def backend_choice(data: Mapping, fail) -> dict:
    """An alias's (or the defaults') `backend: NAME` or `backends: [A, B]` and `policy`, checked for
    shape; whether the names exist is `check_backend_names`'s business."""
    if data.get("backend") is not None and data.get("backends") is not None:
        fail("give either 'backend' or 'backends', not both", "backends")
    names = data.get("backends")
    if data.get("backend") is not None:
        names = [data["backend"]]
    names = names or []
    if not isinstance(names, (list, tuple)) or not all(isinstance(n, str) and n.strip() for n in names):
        fail("'backends' must be a list of backend names", "backends")
    if len(set(names)) != len(names):
        fail("'backends' names a backend twice", "backends")
    policy = data.get("policy") or "fallback"
    if policy not in POLICIES:
        fail(f"'policy' must be one of {', '.join(POLICIES)}, got {policy!r}", "policy")
    return {"backends": tuple(n.strip() for n in names), "policy": policy}


def check_backend_names(names, backends: Mapping[str, RouteBackend], what: str, source: str,
                        line: int | None = None):
    """Every name must be a configured backend (routes.yaml's `backends:`) or `default`."""
    unknown = [n for n in names if n != DEFAULT_BACKEND and n not in backends]
    if unknown:
        known = ", ".join([DEFAULT_BACKEND, *backends])
        raise RouteTableError(f"{what}: unknown backend(s) {', '.join(unknown)} (known: {known})", source,
                              line, "backends")


def backend_fields(name: str, data: Mapping, source: str, lines: Mapping[str, int],
                   line: int | None = None) -> RouteBackend:
    """Validate one backend ({url, api_key}): the URL is required, http(s) with a host."""
    from urllib.parse import urlsplit

    url, api_key = data.get("url"), data.get("api_key") or ""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise RouteTableError(f"backend '{name}': 'url' must be an http(s) URL such as "
                              f"http://10.0.0.5:1234, got {url!r}", source, lines.get("url", line), "url")
    if not isinstance(api_key, str):
        raise RouteTableError(f"backend '{name}': 'api_key' must be a string", source, lines.get("api_key"),
                              "api_key")
    return RouteBackend(name=name, url=url.rstrip("/"), api_key=api_key)


def defaults_fields(data: Mapping, source: str, lines: Mapping[str, int]) -> dict:
    """Validate the defaults `passthrough`, `expose` and `fallback` (its type; whether it names an
    alias is `check_fallback`'s business). Shared by the YAML loader and the admin's defaults."""

    def fail(message: str, key: str):
        raise RouteTableError(f"defaults: {message}", source, lines.get(key), key)

    passthrough = data.get("passthrough", True)
    if not isinstance(passthrough, bool):
        fail("'passthrough' must be true or false", "passthrough")
    expose = data.get("expose", "all")
    if expose not in EXPOSE_MODES:
        fail(f"'expose' must be one of {', '.join(EXPOSE_MODES)}, got {expose!r}", "expose")
    fallback = data.get("fallback")
    if fallback is not None and not isinstance(fallback, str):
        fail("'fallback' must be an alias name", "fallback")
    out = {"passthrough": passthrough, "expose": expose,
           "fallback": normalize_name(fallback) if fallback else None}
    return {**out, **backend_choice(data, fail), **load_fields(data, fail)}


def check_fallback(fallback: str, aliases: Mapping[str, RouteAlias], scope: str, source: str,
                   line: int | None = None):
    """The fallback alias must be a concrete alias of `aliases` (`scope` says which ones, for the
    message): a pattern cannot stand in for a name it does not match."""
    alias = aliases.get(normalize_name(fallback))
    if alias is None or alias.is_pattern:
        raise RouteTableError(f"defaults: 'fallback' must name {scope}, got '{fallback}'", source, line,
                              "fallback")


def tied_pattern(alias: RouteAlias, others: Iterable[RouteAlias]) -> RouteAlias | None:
    """The pattern among `others` that is exactly as specific as `alias` (the same literal prefix), so
    that neither could win over the other; None when `alias` is no pattern or nothing ties."""
    if not alias.is_pattern:
        return None
    return next((other for other in others if other.is_pattern and other.name != alias.name
                 and other.literal_prefix == alias.literal_prefix), None)


def pattern_tie_message(alias: RouteAlias, other: str) -> str:
    return (f"patterns {other} and '{alias.name}' are equally specific (same literal prefix "
            f"'{alias.literal_prefix}'): make one more specific")


def endpoint_fields(data: Mapping, source: str, line: int | None = None,
                    origin: str = "file") -> RouteEndpoint:
    """Validate one declared endpoint ({method, path, status, json}); shared by the YAML loader and
    the admin. A path the proxy serves itself (`routing.core.paths.is_reserved`) is refused."""

    def fail(message: str, key: str):
        raise RouteTableError(f"endpoint: {message}", source, line, key)

    method = str(data.get("method") or "GET").upper()
    if method not in HTTP_METHODS:
        fail(f"'method' must be one of {', '.join(HTTP_METHODS)}", "method")
    path = data.get("path")
    if not isinstance(path, str) or not path.startswith("/"):
        fail("'path' must be a string starting with '/'", "path")
    if is_reserved(path):
        fail(f"'{path}' would shadow the proxy's own API", "path")
    status = data.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        fail("'status' must be an HTTP status between 200 and 599", "status")
    return RouteEndpoint(method, path, status, _plain(data.get("json")), source=origin)
