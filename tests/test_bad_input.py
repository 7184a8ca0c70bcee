"""Bad input is a 400 in the dialect's shape, and the request still leaves its history row: nesting
deeper than the parser's limit allows, durations and numbers out of range."""
import orjson
import pytest
from django.test import AsyncClient

from adminui.rows import LogPolicy, exchange_to_row
from routing.core.errors import BadRequest
from routing.proxy.bodies import MAX_JSON_DEPTH, depth_exceeds, parse_json_object
from routing.proxy.state import current
from tests.upstream_stubs import healthy_lmstudio

pytestmark = pytest.mark.anyio

CHAT = [{"role": "user", "content": "hi"}]


def nested(depth: int, leaf=1):
    value = leaf
    for n in range(depth):
        value = {"a": value} if n % 2 else [value]
    return value


@pytest.mark.parametrize("depth, too_deep", [(1, False), (MAX_JSON_DEPTH, False), (MAX_JSON_DEPTH + 1, True),
                                             (300, True), (1000, True)])
def test_it_measures_nesting_without_recursion(depth, too_deep):
    body = {"x": nested(depth - 1)}  # the object itself is the first level
    assert depth_exceeds(body, MAX_JSON_DEPTH) is too_deep


@pytest.mark.parametrize("deep_branch, too_deep", [(MAX_JSON_DEPTH - 1, False), (MAX_JSON_DEPTH, True)])
def test_one_deep_branch_among_many_shallow_ones_counts(deep_branch, too_deep):
    body = {"tools": [{"schema": {"type": "object"}} for _ in range(5000)], "deep": nested(deep_branch)}
    assert depth_exceeds(body, MAX_JSON_DEPTH) is too_deep


@pytest.mark.parametrize("raw", [b"[" * 2000 + b"]" * 2000, b'{"a":' * 1100 + b"1" + b"}" * 1100,
                                 b'{"messages":' + b"[" * 300 + b"]" * 300 + b"}"])
def test_bodies_deeper_than_the_limit_are_a_bad_request(raw):
    with pytest.raises(BadRequest, match="nested too deeply|must be a JSON object"):
        parse_json_object(raw)


def test_a_wide_shallow_body_is_accepted():
    body = {"input": [[0.1] * 10 for _ in range(1000)], "model": "m"}
    assert parse_json_object(orjson.dumps(body)) == body


def depth_of(value) -> int:
    return 1 + max((depth_of(v) for v in (value.values() if isinstance(value, dict) else value)), default=0) \
        if isinstance(value, (dict, list)) else 0


def deep_bytes(value) -> bytes:
    """JSON for values deeper than orjson writes."""
    if isinstance(value, dict):
        return b"{" + b",".join(orjson.dumps(k) + b":" + deep_bytes(v) for k, v in value.items()) + b"}"
    if isinstance(value, list):
        return b"[" + b",".join(deep_bytes(v) for v in value) + b"]"
    return orjson.dumps(value)


BAD = [
    ("/api/chat", {"model": "coder", "messages": CHAT, "deep": nested(300)}),
    ("/api/chat", {"model": "coder", "messages": CHAT, "format": nested(200)}),
    ("/api/chat", {"model": "coder", "messages": [{"role": "user", "content": nested(120)}]}),
    ("/api/generate", {"model": "coder", "prompt": "hi", "options": {"stop": nested(100)}}),
    ("/v1/chat/completions", {"model": "coder", "messages": CHAT, "response_format": nested(250)}),
    ("/v1/chat/completions", {"model": "coder", "messages": CHAT, "metadata": nested(300)}),
    ("/v1/embeddings", {"model": "embedder", "input": nested(100)}),
    ("/api/chat", {"model": "coder", "messages": CHAT, "keep_alive": 1e300}),
    ("/api/chat", {"model": "coder", "messages": CHAT, "keep_alive": "99999999999999999999h"}),
    ("/api/chat", {"model": "coder", "messages": [], "keep_alive": 1e300}),
    ("/api/generate", {"model": "coder", "prompt": "", "keep_alive": "1e300"}),
    ("/api/embed", {"model": "embedder", "input": "hi", "keep_alive": 1e20}),
    *[(path, {**body, "stream": stream}) for stream in ("false", "no", 1, 0, [], {})
      for path, body in (("/api/chat", {"model": "coder", "messages": CHAT}),
                         ("/api/generate", {"model": "coder", "prompt": "hi"}),
                         ("/v1/chat/completions", {"model": "coder", "messages": CHAT}),
                         ("/v1/responses", {"model": "coder", "input": "hi"}),
                         ("/v1/messages", {"model": "coder", "max_tokens": 9, "messages": CHAT}))],
    ("/api/chat", {"model": "coder", "messages": [], "options": "fast"}),
    ("/api/chat", {"model": "coder", "messages": CHAT, "options": ["fast"]}),
    ("/api/generate", {"model": "coder", "prompt": "", "options": 5}),
    ("/api/generate", {"model": "coder", "prompt": "", "keep_alive": 0, "options": "x"}),
]


@pytest.mark.parametrize("path, body", BAD)
async def test_bad_input_is_a_400_with_a_history_row(settings, routes_file, upstream_mock, path, body):
    healthy_lmstudio(upstream_mock)
    seen = []
    current().observers.add(seen.append)
    try:
        raw = orjson.dumps(body) if depth_of(body) < 250 else deep_bytes(body)
        response = await AsyncClient().post(path, raw, content_type="application/json")
    finally:
        current().observers.remove(seen.append)
    assert response.status_code == 400, response.content[:300]
    error = response.json()["error"]
    assert (error["message"] if path.startswith("/v1/") else error)
    [exchange] = seen
    row = exchange_to_row(exchange, LogPolicy(bodies=True, max_bytes=65536))
    assert row["status"] == 400 and row["error"]
    assert not upstream_mock.calls or all(c.request.url.path.endswith("models") for c in upstream_mock.calls)
