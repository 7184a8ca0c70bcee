"""routes.yaml beyond one-to-one aliases: patterns, fallback, visibility and declared endpoints."""
import io

import pytest

from routing.config.loader import RouteTableError, load_routes

TABLE = load_routes(io.StringIO("""
defaults:
  passthrough: true
  fallback: coder
aliases:
  coder: qwen2.5-7b-instruct
  "llama3*": llama-3.2-1b-instruct
  "llama3.1*": llama-3.1-8b
  "gpt-4*": {model: qwen2.5-7b-instruct, temperature: 0.1}
  "gpt-4o-mini": tiny-model
  secret: {model: hidden-model, hidden: true}
endpoints:
  - {method: GET, path: /api/experimental/ping, json: {ok: true}}
  - {method: POST, path: /probe, status: 204}
"""))

UPSTREAM = {"qwen2.5-7b-instruct", "qwen/qwen3-4b"}


@pytest.mark.parametrize("requested, model, via, alias", [
    ("coder", "qwen2.5-7b-instruct", "alias", "coder"),                  # exact
    ("coder:latest", "qwen2.5-7b-instruct", "alias", "coder"),           # tag stripping
    ("gpt-4o-mini", "tiny-model", "alias", "gpt-4o-mini"),               # exact beats pattern
    ("gpt-4o", "qwen2.5-7b-instruct", "pattern", "gpt-4*"),              # pattern
    ("llama3.1:8b", "llama-3.1-8b", "pattern", "llama3.1*"),             # longest literal prefix wins
    ("llama3:latest", "llama-3.2-1b-instruct", "pattern", "llama3*"),
    ("qwen/qwen3-4b", "qwen/qwen3-4b", "passthrough", None),             # LM Studio has it
    ("codellama:7b", "qwen2.5-7b-instruct", "fallback", "coder"),        # unknown: the fallback
])
def test_resolution_order(requested, model, via, alias):
    route = TABLE.resolve(requested, UPSTREAM)
    assert (route.model, route.via, route.alias.name if route.alias else None) == (model, via, alias)
    assert route.requested == requested


def test_without_the_upstream_list_names_pass_through():
    assert TABLE.resolve("codellama:7b").via == "passthrough"


@pytest.mark.parametrize("defaults, result", [
    ("{passthrough: false}", None),                       # Ollama's behaviour: a 404
    ("{passthrough: true}", ("passthrough", "unknown")),  # LM Studio decides
    ("{passthrough: false, fallback: a}", ("fallback", "m")),
])
def test_unknown_names(defaults, result):
    table = load_routes(io.StringIO(f"defaults: {defaults}\naliases:\n  a: m\n"))
    route = table.resolve("unknown", set())
    if result is None:
        assert route is None
    else:
        assert (route.via, route.model) == result


@pytest.mark.parametrize("expose, names, upstream", [
    ("all", ["coder", "gpt-4o-mini"], True),
    ("aliases", ["coder", "gpt-4o-mini"], False),
    ("none", [], False),
])
def test_visibility(expose, names, upstream):
    table = load_routes(io.StringIO(f"""
defaults: {{expose: {expose}}}
aliases:
  coder: m
  "gpt-4*": m
  gpt-4o-mini: m
  secret: {{model: m, hidden: true}}
"""))
    assert [a.name for a in table.listed_aliases()] == names
    assert table.lists_upstream_models is upstream


def test_hidden_aliases_still_resolve():
    assert TABLE.resolve("secret").model == "hidden-model"


def test_declared_endpoints_match_method_and_path_and_head_uses_get():
    assert TABLE.endpoint("GET", "/api/experimental/ping").body == {"ok": True}
    assert TABLE.endpoint("HEAD", "/api/experimental/ping").status == 200
    assert TABLE.endpoint("POST", "/api/experimental/ping") is None
    assert TABLE.endpoint("POST", "/probe").status == 204


@pytest.mark.parametrize("text, line, words", [
    ('aliases:\n  "llama*": a\n  "llama?x": b\n', 3, "patterns 'llama*' (line 2) and 'llama?x'"),
    ("defaults: {fallback: nope}\naliases:\n  a: m\n", 1, "'fallback' must name an alias"),
    ("defaults: {expose: some}\n", 1, "'expose' must be one of"),
    ("aliases:\n  a: {model: m, hidden: maybe}\n", 2, "'hidden' must be true or false"),
    ("endpoints:\n  - {path: /api/chat, json: {}}\n", 2, "would shadow the proxy's own API"),
    ("endpoints:\n  - {path: /v1/models/x}\n", 2, "would shadow"),
    ("endpoints:\n  - {path: nope}\n", 2, "'path' must be a string starting with '/'"),
    ("endpoints:\n  - {path: /x, method: FETCH}\n", 2, "'method' must be one of"),
    ("endpoints:\n  - {path: /x, status: 99}\n", 2, "'status' must be an HTTP status"),
    ("endpoints:\n  - {path: /x, body: 1}\n", 2, "unknown key 'body'"),
    ("endpoints:\n  - {path: /x}\n  - {path: /x}\n", 3, "declared twice (first on line 2)"),
    ("endpoints: {path: /x}\n", 1, "endpoints must be a list"),
])
def test_invalid_patterns_fallbacks_and_endpoints(text, line, words):
    with pytest.raises(RouteTableError) as info:
        load_routes(io.StringIO(text))
    assert info.value.line == line and words in str(info.value)


def test_reserved_paths_cover_every_url_the_proxy_serves():
    from django.urls import get_resolver

    from routing.core.paths import RESERVED_PATHS, RESERVED_PREFIXES

    def walk(patterns, prefix=""):
        for p in patterns:
            route = prefix + str(p.pattern)
            if hasattr(p, "url_patterns"):
                yield from walk(p.url_patterns, route)
            elif not route.startswith("^"):
                yield "/" + route

    for path in walk(get_resolver().url_patterns):
        concrete = path.split("<")[0]
        assert concrete in RESERVED_PATHS or concrete.startswith(RESERVED_PREFIXES), path
