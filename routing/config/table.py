"""The route table as data: aliases, defaults, declared endpoints, and how a model name resolves.

Everything here is immutable. `routing.config.loader.load_routes` builds it from routes.yaml; reloading
builds a new table and swaps it (see `routing.config.registry`).
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from routing.config.downloads import Download
from routing.config.messages import Message
from routing.core.names import normalize_name

GLOB_CHARS = "*?["
DEFAULT_BACKEND = "default"  # LMSTUDIO_URL's server: the backend of every alias that names none
POLICIES = ("fallback", "least-busy")


@dataclass(frozen=True)
class RouteBackend:
    """A configured LM Studio server."""

    name: str
    url: str
    api_key: str = ""


@dataclass(frozen=True)
class RouteAlias:
    name: str
    model: str
    ttl: int | None = None
    temperature: float | None = None
    system: str | None = None
    system_mode: str = "prepend"
    options: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    hidden: bool = False
    backends: tuple[str, ...] = ()  # LM Studio servers, in order (empty: defaults.backends)
    policy: str = "fallback"         # fallback | least-busy (see routing.lmstudio.backends)
    download: Download | None = None  # where `ollama pull` gets its model (routing.proxy.pull)
    # How its model is loaded (routing.config.load_settings; None: the defaults', else LM Studio's JIT)
    context_length: int | None = None
    eval_batch_size: int | None = None
    num_experts: int | None = None
    flash_attention: bool | None = None
    offload_kv_cache_to_gpu: bool | None = None
    num_ctx_max: int | None = None   # a client's num_ctx is honoured up to this (None: ignored)
    messages: tuple[Message, ...] = ()  # a conversation put before the client's (routing.config.messages)
    license: str | None = None       # shown by /api/show, never sent
    source: str = "file"

    @property
    def is_pattern(self) -> bool:
        return any(c in self.name for c in GLOB_CHARS)

    @property
    def literal_prefix(self) -> str:
        """The name up to its first glob character: the longer, the more specific the pattern."""
        cut = min((self.name.index(c) for c in GLOB_CHARS if c in self.name), default=len(self.name))
        return self.name[:cut]


@dataclass(frozen=True)
class Defaults:
    ttl: int | None = None
    passthrough: bool = True
    fallback: str | None = None      # the alias that serves unknown names (None: unknown is a 404)
    expose: str = "all"              # what model lists show: all | aliases | none
    backends: tuple[str, ...] = ()   # for aliases without their own and pass-through names (empty: default)
    policy: str = "fallback"
    # Load settings for aliases without their own, and pass-through names (routing.config.load_settings)
    context_length: int | None = None
    eval_batch_size: int | None = None
    num_experts: int | None = None
    flash_attention: bool | None = None
    offload_kv_cache_to_gpu: bool | None = None
    num_ctx_max: int | None = None


@dataclass(frozen=True)
class RouteEndpoint:
    """A path answered with a fixed JSON body, for clients that probe vendor endpoints."""

    method: str
    path: str
    status: int = 200
    body: Any = None
    source: str = "file"

    @property
    def key(self) -> tuple[str, str]:
        """What identifies a declaration: an admin one with the same key replaces the file's."""
        return self.method, self.path


@dataclass(frozen=True)
class Route:
    """What a requested model name resolved to."""

    requested: str
    model: str
    alias: RouteAlias | None = None
    via: str = "alias"               # alias | pattern | passthrough | fallback

    def ttl(self, defaults: Defaults) -> int | None:
        if self.alias and self.alias.ttl is not None:
            return self.alias.ttl
        return defaults.ttl

    def backends(self, defaults: Defaults) -> tuple[tuple[str, ...], str]:
        """(backend names in order, policy): the alias's own, else the defaults', else `default`
        (LMSTUDIO_URL)."""
        if self.alias and self.alias.backends:
            return self.alias.backends, self.alias.policy
        return defaults.backends or (DEFAULT_BACKEND,), defaults.policy


@dataclass(frozen=True)
class RouteTable:
    defaults: Defaults = Defaults()
    aliases: Mapping[str, RouteAlias] = field(default_factory=lambda: MappingProxyType({}))
    endpoints: tuple[RouteEndpoint, ...] = ()
    # The LM Studio servers routes.yaml names (`backends:`); `default` (LMSTUDIO_URL) is implied.
    backends: Mapping[str, RouteBackend] = field(default_factory=lambda: MappingProxyType({}))
    patterns: tuple[RouteAlias, ...] = field(init=False, compare=False, repr=False)

    def __post_init__(self):
        patterns = [a for a in self.aliases.values() if a.is_pattern]
        patterns.sort(key=lambda a: (-len(a.literal_prefix), a.source != "admin", a.name))
        object.__setattr__(self, "patterns", tuple(patterns))

    def resolve(self, requested: str, upstream_models=None) -> Route | None:
        """The route for a client's model name, or None when nothing serves it.

        Order: an exact alias; the most specific matching pattern; the name itself when names pass
        through (and, if `upstream_models` is given, LM Studio has it); the fallback alias.
        """
        name = normalize_name(requested)
        alias = self.aliases.get(name)
        if alias is not None and not alias.is_pattern:
            return Route(requested, alias.model, alias)
        for pattern in self.patterns:
            if fnmatch.fnmatchcase(name, pattern.name):
                return Route(requested, pattern.model, pattern, via="pattern")
        fallback = self.aliases.get(self.defaults.fallback or "")
        known = upstream_models is None or name in upstream_models
        if self.defaults.passthrough and name and (known or fallback is None):
            return Route(requested, name, via="passthrough")
        if fallback is not None:
            return Route(requested, fallback.model, fallback, via="fallback")
        return None

    def listed_aliases(self) -> list[RouteAlias]:
        """The aliases model lists show: concrete names, not hidden, unless lists are off."""
        if self.defaults.expose == "none":
            return []
        return [a for a in self.aliases.values() if not a.hidden and not a.is_pattern]

    @property
    def lists_upstream_models(self) -> bool:
        """Whether model lists also show LM Studio's own models (usable only when names pass through)."""
        return self.defaults.expose == "all" and self.defaults.passthrough

    def endpoint(self, method: str, path: str) -> RouteEndpoint | None:
        """The declared endpoint for a request (HEAD is answered by a GET declaration)."""
        for declared in self.endpoints:
            if declared.path == path and (declared.method == method
                                          or (method == "HEAD" and declared.method == "GET")):
                return declared
        return None

    def with_aliases(self, extra: Iterable[RouteAlias]) -> RouteTable:
        """A new table where `extra` aliases replace same-named ones (admin edits win over the file)."""
        merged = dict(self.aliases)
        merged.update({a.name: a for a in extra})
        return replace(self, aliases=MappingProxyType(merged))

    def merged_with(self, overrides: "TableOverrides") -> RouteTable:
        """A new table with the admin's store laid over this one, by one rule for everything: an admin
        alias replaces the same-named alias, an admin endpoint the same (method, path), and each
        default the admin sets replaces the file's (unset ones keep the file's value)."""
        endpoints = {e.key: e for e in self.endpoints}
        endpoints.update({e.key: e for e in overrides.endpoints})
        backends = self.backends  # the same mapping when the admin adds none: the pool keeps its clients
        if overrides.backends:
            backends = MappingProxyType({**self.backends, **{b.name: b for b in overrides.backends}})
        return replace(self.with_aliases(overrides.aliases),
                       defaults=replace(self.defaults, **dict(overrides.defaults)),
                       endpoints=tuple(endpoints.values()), backends=backends)


@dataclass(frozen=True)
class TableOverrides:
    """What the admin stores over routes.yaml: aliases, declared endpoints, backends, and the defaults
    it sets (field name -> value; a field left out keeps the file's value)."""

    aliases: tuple[RouteAlias, ...] = ()
    defaults: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    endpoints: tuple[RouteEndpoint, ...] = ()
    backends: tuple[RouteBackend, ...] = ()
