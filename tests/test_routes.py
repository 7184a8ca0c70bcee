"""The route table: loading, validation messages with lines, resolution and precedence."""
import io

import pytest

from routing.config.loader import RouteTableError, load_routes
from routing.config.table import RouteAlias, RouteTable, normalize_name


def load(text: str) -> RouteTable:
    return load_routes(io.StringIO(text), source="routes.yaml")


FULL = """
defaults:
  ttl: 10m
  passthrough: false
aliases:
  coder:
    model: qwen2.5-7b-instruct
    ttl: 1h30m
    temperature: 0.2
    system: "You are terse."
    system_mode: replace
    options: {top_p: 0.9, stop: ["</s>"]}
  chat: llama-3.2-1b-instruct
"""


def test_it_loads_every_field_of_a_full_file():
    table = load(FULL)
    assert table.defaults.ttl == 600 and table.defaults.passthrough is False
    coder = table.aliases["coder"]
    assert (coder.model, coder.ttl, coder.temperature, coder.system, coder.system_mode) == (
        "qwen2.5-7b-instruct", 5400, 0.2, "You are terse.", "replace")
    assert dict(coder.options) == {"top_p": 0.9, "stop": ["</s>"]}
    assert table.aliases["chat"] == RouteAlias(name="chat", model="llama-3.2-1b-instruct")


def test_an_empty_file_is_an_empty_table_that_passes_names_through():
    table = load("")
    assert table.aliases == {} and table.resolve("some-model").model == "some-model"


def test_the_table_is_immutable():
    table = load(FULL)
    with pytest.raises(TypeError):
        table.aliases["x"] = None
    with pytest.raises(Exception):
        table.defaults.ttl = 1


@pytest.mark.parametrize("text, line, words", [
    ("aliases:\n  a:\n    model: x\n    ttl: 5 minutes\n", 4, "alias 'a': bad 'ttl'"),
    ("aliases:\n  a:\n    modle: x\n", 3, "alias 'a': unknown key 'modle'"),
    ("aliases:\n  a:\n    ttl: 5m\n", 3, "alias 'a': 'model' (the LM Studio model id) is required"),
    ("aliases:\n  a:\n    model: x\n    temperature: hot\n", 4, "'temperature' must be a number"),
    ("aliases:\n  a:\n    model: x\n    temperature: 7\n", 4, "between 0 and 2"),
    ("aliases:\n  a:\n    model: x\n    system_mode: after\n", 4, "'system_mode' must be one of"),
    ("aliases:\n  a:\n    model: x\n    options: {top_q: 1}\n", 4, "unknown option(s) top_q"),
    ("aliases:\n  a: {model: x}\n  a:latest: {model: y}\n", 3, "same as 'a' on line 2"),
    ("aliases:\n  a: {model: x}\n  a: {model: y}\n", 3, "duplicate key 'a' (first on line 2)"),
    ("defaults:\n  ttl: soon\n", 2, "defaults: bad 'ttl'"),
    ("defaults:\n  passthrough: maybe\n", 2, "'passthrough' must be true or false"),
    ("default:\n  ttl: 1m\n", 1, "top level: unknown key 'default'"),
    ("aliases:\n  a:\n   model: x\n  b: [\n", 5, "invalid YAML"),
    ("- just\n- a list\n", 1, "the file must be a mapping"),
])
def test_a_broken_file_names_the_line_and_the_problem(text, line, words):
    with pytest.raises(RouteTableError) as info:
        load(text)
    assert info.value.line == line
    assert words in str(info.value)
    assert str(info.value).startswith(f"routes.yaml:{line}: ")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name, normal", [("coder", "coder"), ("coder:latest", "coder"),
                                          ("coder:7b", "coder:7b"), (" qwen/qwen3 ", "qwen/qwen3")])
def test_latest_is_the_same_name(name, normal):
    assert normalize_name(name) == normal


def test_it_resolves_aliases_with_or_without_latest():
    table = load(FULL)
    for name in ("coder", "coder:latest"):
        route = table.resolve(name)
        assert route.model == "qwen2.5-7b-instruct" and route.alias.name == "coder"
        assert route.requested == name


def test_unknown_names_pass_through_only_when_allowed():
    assert load(FULL).resolve("other") is None
    route = load("defaults: {passthrough: true}").resolve("qwen/qwen3-4b:latest")
    assert route.model == "qwen/qwen3-4b" and route.alias is None


def test_ttl_precedence_alias_over_defaults():
    table = load(FULL)
    assert table.resolve("coder").ttl(table.defaults) == 5400
    assert table.resolve("chat").ttl(table.defaults) == 600
    assert load("aliases: {a: b}").resolve("a").ttl(load("").defaults) is None


def test_admin_aliases_win_over_file_aliases():
    table = load(FULL).with_aliases([RouteAlias(name="coder", model="other", source="admin")])
    assert table.resolve("coder").model == "other"
    assert table.resolve("chat").model == "llama-3.2-1b-instruct"
