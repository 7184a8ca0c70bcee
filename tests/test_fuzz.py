"""Property-based fuzzing of every API endpoint: no input makes the proxy answer 5xx, a traceback, or hang.

In-process (Django's async test client, LM Studio faked by respx, many examples) and end to end (the
real server under Daphne and the fake LM Studio process, a smaller budget) the fake upstream is also
told to fail in the ways LM Studio does; only then may the proxy answer 502/504, never another 5xx. Budgets are fixed and examples derandomized, so CI runs the same inputs each time.
"""
from __future__ import annotations

import asyncio
import base64
import json
from collections import Counter

import httpx
import orjson
import pytest
from django.test import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api_endpoints import API_ENDPOINTS
from tests.upstream_stubs import MODELS, chat_stream, completion_stream, embeddings_answer

# What the proxy may answer when LM Studio fails: 502/504, or LM Studio's own error status, passed on.
UPSTREAM_STATUSES = {502, 504}
# A deliberate, documented "this cannot be done here" (pull/push/create, a path LM Studio lacks), not a
# failure: allowed whatever the upstream does.
DOCUMENTED_5XX = {501}
FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FUZZ_E2E = settings(FUZZ, max_examples=30)
FUZZED = {"in-process": Counter(), "e2e": Counter()}   # status -> requests, for the record

# --- inputs ------------------------------------------------------------------------------------

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
leaf = (st.none() | st.booleans() | st.integers(min_value=-(2 ** 70), max_value=2 ** 70)
        | st.floats(allow_nan=False) | st.text(max_size=20))
json_values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
models = st.sampled_from(["coder", "coder:latest", "tiny", "qwen2.5-7b-instruct", "no-such", "", " ",
                          "http://evil.example/", "../../x", "a" * 300]) | json_values
roles = st.sampled_from(["system", "user", "assistant", "tool", "developer", "bogus", ""]) | json_values
images = st.lists(st.sampled_from([PNG, "not base64!", "", "data:image/png;base64," + PNG, "AAAA"])
                  | json_values, max_size=2) | json_values
blocks = st.lists(st.fixed_dictionaries({"type": st.sampled_from(
    ["text", "image", "tool_use", "tool_result", "thinking", "input_text", "input_image", "output_text", "bogus"])},
    optional={"text": json_values, "source": json_values, "id": json_values, "name": json_values,
              "input": json_values, "tool_use_id": json_values, "content": json_values, "image_url": json_values}),
    max_size=3)
messages = st.lists(st.fixed_dictionaries({"role": roles}, optional={
    "content": st.text(max_size=30) | blocks | json_values, "type": json_values, "images": images, "tool_calls": json_values,
    "tool_call_id": json_values, "name": json_values}), max_size=3) | json_values
numbers = (st.integers(min_value=-(2 ** 70), max_value=2 ** 70) | st.floats(allow_nan=False)
           | json_values)
options = st.dictionaries(st.sampled_from(["temperature", "top_p", "top_k", "num_predict", "seed", "stop",
                                           "min_p", "num_ctx", "repeat_penalty", "bogus"]), numbers,
                          max_size=4) | json_values
FIELDS = {
    "model": models, "messages": messages, "prompt": st.text(max_size=30) | json_values,
    "system": json_values, "images": images, "options": options, "format": json_values,
    "stream": st.booleans() | json_values, "keep_alive": st.sampled_from(["5m", "-1", "0", "1h30m", "x"])
    | numbers, "tools": json_values, "think": json_values, "stream_options": json_values,
    "max_tokens": numbers, "temperature": numbers, "top_p": numbers, "ttl": numbers, "stop": json_values,
    "input": json_values | messages, "name": models, "tool_choice": json_values, "thinking": json_values,
    "stop_sequences": json_values, "top_k": numbers, "instructions": json_values, "max_output_tokens": numbers,
    "reasoning": json_values, "text": json_values, "previous_response_id": json_values,
}
bodies = st.fixed_dictionaries({"model": models},
                                optional={k: v for k, v in FIELDS.items() if k != "model"})


def nested(opening: str) -> bytes:
    """Deeper nesting than any JSON parser allows."""
    return opening.encode() * 100_000


def encoded(value) -> bytes:
    """JSON text; Python's encoder also writes integers past 64 bits and Infinity (not JSON: a 400)."""
    return json.dumps(value).encode()


anything = st.one_of(bodies.map(encoded), json_values.map(encoded), st.binary(max_size=60),
                     st.sampled_from("[{").map(nested))
field_changes = st.lists(st.sampled_from(sorted(FIELDS)).flatmap(lambda k: st.tuples(st.just(k), FIELDS[k])),
                         max_size=2)


def raw_bodies(good: dict | None):
    """Bodies for an endpoint: mostly its good body with a field or two changed (so requests get past
    validation and meet the upstream), the rest anything at all."""
    if good is None:
        return anything
    near_valid = field_changes.map(lambda changes: encoded({**good, **dict(changes)}))
    return st.one_of(near_valid, near_valid, anything)


def endpoint_ids(endpoints):
    return [f"{method} {path}" for method, path, _ in endpoints]


# How each dialect's stream ends, done or failed: never just stopping.
STREAM_ENDS = (b"data: [DONE]", b'"done":true', b'"error"', b'{"type":"message_stop"}', b'"type":"response.completed"',
               b'"type":"response.incomplete"')


def stream_ended_properly(content: bytes) -> bool:
    last = content.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return any(end in last for end in STREAM_ENDS)


def check_answer(path: str, status: int, content_type: str, body: bytes, allowed_5xx: set):
    """What every answer must be: not a 5xx (bar the allowed ones), and a JSON error if it is an error."""
    assert status < 500 or status in allowed_5xx | DOCUMENTED_5XX, (status, body[:300])
    if status >= 400:
        error = orjson.loads(body)["error"]
        assert error if not path.startswith("/v1/") else error["message"]
    assert b"Traceback" not in body


# --- in-process, with LM Studio faked by respx --------------------------------------------------

FAULTS = {
    "healthy": None,
    "down": httpx.ConnectError("connection refused"),
    "slow": httpx.ReadTimeout("timed out"),
    "fails": httpx.Response(500, json={"error": {"message": "CUDA out of memory"}}),
    "quirky": httpx.Response(200, json={"error": "Unexpected endpoint or method. (POST /v1/x)"}),
    "cut": httpx.Response(200, content=b'data: {"choices": [{"delta": {"content": "a"}}]}\n\n',
                          headers={"Content-Type": "text/event-stream"}),
    "garbage": httpx.Response(200, content=b"data: {nope\n\n", headers={"Content-Type": "text/event-stream"}),
    "jit off": httpx.Response(400, json={"error": {"message": "No models loaded. Please load a model in the "
                                                              "developer page or use the 'lms load' command."}}),
}


def allowed_5xx(fault) -> set:
    if fault is None:
        return set()
    return UPSTREAM_STATUSES | ({fault.status_code} if isinstance(fault, httpx.Response) else set())


@pytest.fixture
def scripted_lmstudio(upstream_mock, routes_file):
    """respx LM Studio whose behaviour each example sets: `state["fault"]` names one of FAULTS."""
    state = {"fault": "healthy"}

    def answer(healthy):
        def respond(request):
            fault = FAULTS[state["fault"]]
            if isinstance(fault, Exception):
                raise fault
            return healthy() if fault is None else fault
        return respond

    upstream_mock.post("/v1/chat/completions").mock(side_effect=answer(chat_stream))
    upstream_mock.post("/v1/completions").mock(side_effect=answer(completion_stream))
    upstream_mock.post("/v1/embeddings").mock(side_effect=answer(embeddings_answer))
    for path in ("/v1/models", "/api/v0/models"):
        upstream_mock.get(path).mock(side_effect=answer(lambda: httpx.Response(200, json=MODELS)))
    upstream_mock.route().mock(return_value=httpx.Response(200, json={"error": "Unexpected endpoint"}))
    return state


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


async def send(method: str, path: str, raw: bytes, content_type: str):
    """One request through Django's async client, a streamed answer read to its end."""
    client = AsyncClient(raise_request_exception=False)
    if method == "GET":
        response = await client.get(path)
    else:
        response = await client.generic(method, path, raw, content_type=content_type)
    if response.streaming:
        content = b"".join([part async for part in response.streaming_content])
        assert stream_ended_properly(content), content[-300:]
    else:
        content = response.content
    return response.status_code, response.get("Content-Type", ""), content


@pytest.mark.parametrize("method, path, good", API_ENDPOINTS, ids=endpoint_ids(API_ENDPOINTS))
def test_no_body_makes_an_endpoint_fail_in_process(scripted_lmstudio, loop, method, path, good):
    @FUZZ
    @given(raw=raw_bodies(good), fault=st.sampled_from(sorted(FAULTS)),
           content_type=st.sampled_from(["application/json", "text/plain", "multipart/form-data"]))
    def fuzz(raw, fault, content_type):
        scripted_lmstudio["fault"] = fault
        status, ctype, body = loop.run_until_complete(send(method, path, raw, content_type))
        FUZZED["in-process"][status] += 1
        check_answer(path, status, ctype, body, allowed_5xx(FAULTS[fault]))

    fuzz()


# --- end to end, the real server and the fake LM Studio process ---------------------------------


# Scripts for the fake LM Studio process (see its /_fake/script): healthy most of the time.
FAKE_SCRIPTS = [{}, {}, {}, {"status": 500, "error": "CUDA out of memory"}, {"status": 503, "error": "busy"},
                {"jit": False}, {"tokens": 5, "cut_after": 2}]


@pytest.mark.e2e
@pytest.mark.parametrize("method, path, good", API_ENDPOINTS, ids=endpoint_ids(API_ENDPOINTS))
def test_no_body_makes_an_endpoint_fail_end_to_end(proxy_server, fake, method, path, good):
    with httpx.Client(base_url=proxy_server.url, timeout=30) as client:
        @FUZZ_E2E
        @given(raw=raw_bodies(good), script=st.sampled_from(FAKE_SCRIPTS))
        def fuzz(raw, script):
            fake.script(**script)
            response = client.request(method, path, content=raw if method != "GET" else None,
                                      headers={"Content-Type": "application/json"})
            FUZZED["e2e"][response.status_code] += 1
            check_answer(path, response.status_code, response.headers.get("content-type", ""),
                         response.content, UPSTREAM_STATUSES | {script.get("status")} if script else set())
            if response.status_code == 200 and path in ("/api/chat", "/api/generate"):
                last = response.content.rstrip(b"\n").rsplit(b"\n", 1)[-1]
                assert orjson.loads(last).get("done") or "error" in orjson.loads(last)

        fuzz()
    assert fake.stats()["open_streams"] == 0


def test_report_how_many_requests_were_fuzzed():
    """Runs last in this module: prints the figures (pytest -s) and checks the fuzzing reached the
    success paths, not only the validation errors."""
    for where, statuses in FUZZED.items():
        print(f"\nfuzzed {where}: {sum(statuses.values())} requests, by status {dict(sorted(statuses.items()))}")
    if FUZZED["in-process"]:
        assert FUZZED["in-process"][200] > 0 and FUZZED["in-process"][400] > 0
