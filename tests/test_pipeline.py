"""The pipeline in-process, with respx standing in for LM Studio (no processes, no sockets)."""
import asyncio

import httpx
import orjson
import pytest
from django.test import AsyncClient

from routing.core.exchange import DISCONNECTED
from routing.proxy.state import current
from tests.conftest import use_state

pytestmark = pytest.mark.anyio


def sse(*events, done=True) -> bytes:
    body = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


def delta(content=None, finish=None, **extra):
    d = {"content": content} if content is not None else {}
    d.update(extra)
    return {"choices": [{"index": 0, "delta": d, "finish_reason": finish}]}


MSGS = [{"role": "user", "content": "x"}]
USAGE = {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}}


@pytest.fixture
def finished():
    """Every exchange handed to the observers during the test."""
    seen = []
    current().observers.add(seen.append)
    yield seen
    current().observers.remove(seen.append)


def stream_reply(*events, done=True):
    return httpx.Response(200, content=sse(*events, done=done),
                          headers={"content-type": "text/event-stream"})


async def test_ollama_chat_is_translated_overridden_and_recorded(upstream_mock, routes_file, finished):
    route = upstream_mock.post("/v1/chat/completions").mock(
        return_value=stream_reply(delta("Hi", role="assistant"), delta(" there", finish="stop"), USAGE))
    r = await AsyncClient().post("/api/chat", {"model": "coder", "stream": False,
                                               "messages": [{"role": "user", "content": "yo"}]},
                                 content_type="application/json")
    assert r.status_code == 200
    body = orjson.loads(r.content)
    assert body["message"] == {"role": "assistant", "content": "Hi there"}
    assert (body["prompt_eval_count"], body["eval_count"]) == (7, 2)
    sent = orjson.loads(route.calls.last.request.content)
    assert sent["model"] == "qwen2.5-7b-instruct" and sent["temperature"] == 0.2
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    [exchange] = finished
    assert (exchange.alias, exchange.upstream_model, exchange.status) == ("coder", "qwen2.5-7b-instruct", 200)
    assert exchange.response_text == "Hi there" and exchange.completion_tokens == 2
    assert r["X-Request-Id"] == exchange.id


async def test_upstream_404_is_an_ollama_model_not_found(upstream_mock, routes_file, finished):
    upstream_mock.post("/v1/chat/completions").mock(return_value=httpx.Response(
        404, json={"error": {"message": "no", "code": "model_not_found"}}))
    r = await AsyncClient().post("/api/chat", {"model": "ghost", "messages": MSGS},
                                 content_type="application/json")
    assert (r.status_code, orjson.loads(r.content)) == (404, {"error": "model 'ghost' not found"})
    assert finished[0].status == 404


async def test_openai_side_gets_openai_errors(upstream_mock, routes_file):
    upstream_mock.post("/v1/chat/completions").mock(return_value=httpx.Response(
        404, json={"error": {"message": "no", "code": "model_not_found"}}))
    r = await AsyncClient().post("/v1/chat/completions",
                                 {"model": "ghost", "messages": [{"role": "user", "content": "x"}]},
                                 content_type="application/json")
    error = orjson.loads(r.content)["error"]
    assert r.status_code == 404 and error["code"] == "model_not_found"


async def test_lmstudio_200_unexpected_endpoint_is_an_error(upstream_mock, routes_file):
    upstream_mock.post("/v1/chat/completions").mock(return_value=httpx.Response(
        200, json={"error": "Unexpected endpoint or method. (POST /v1/chat/completions)"}))
    r = await AsyncClient().post("/api/chat", {"model": "coder", "messages": MSGS},
                                 content_type="application/json")
    assert r.status_code == 501 and "Unexpected endpoint" in orjson.loads(r.content)["error"]


async def test_unreachable_upstream_is_a_502(upstream_mock, routes_file):
    upstream_mock.post("/v1/chat/completions").mock(side_effect=httpx.ConnectError("refused"))
    r = await AsyncClient().post("/api/generate", {"model": "coder", "prompt": "x"},
                                 content_type="application/json")
    assert r.status_code == 502 and "cannot reach LM Studio" in orjson.loads(r.content)["error"]


async def test_slow_upstream_is_a_504(upstream_mock, routes_file):
    upstream_mock.post("/v1/chat/completions").mock(side_effect=httpx.ReadTimeout("slow"))
    r = await AsyncClient().post("/api/chat", {"model": "coder", "messages": MSGS},
                                 content_type="application/json")
    assert r.status_code == 504


async def test_a_stream_without_done_ends_with_an_error_line(upstream_mock, routes_file, finished):
    upstream_mock.post("/v1/chat/completions").mock(
        return_value=stream_reply(delta("Hi", role="assistant"), done=False))
    r = await AsyncClient().post("/api/chat", {"model": "coder", "messages": MSGS},
                                 content_type="application/json")
    lines = [orjson.loads(x) async for x in _lines(r)]
    assert lines[0]["message"]["content"] == "Hi"
    assert "before it was complete" in lines[-1]["error"]
    assert finished[0].error and finished[0].response_text == "Hi"


async def test_streamed_openai_chunks_keep_the_client_model_name_and_hide_unrequested_usage(
        upstream_mock, routes_file):
    route = upstream_mock.post("/v1/chat/completions").mock(return_value=stream_reply(
        {**delta("Hi", role="assistant"), "model": "qwen2.5-7b-instruct"}, delta(finish="stop"), USAGE))
    r = await AsyncClient().post("/v1/chat/completions",
                                 {"model": "coder", "stream": True,
                                  "messages": [{"role": "user", "content": "x"}]},
                                 content_type="application/json")
    body = b"".join([part async for part in r.streaming_content])
    events = [e for e in body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    first = orjson.loads(events[0][6:])
    assert first["model"] == "coder"
    assert not any(b'"usage"' in e for e in events)  # the client did not ask for usage
    assert orjson.loads(route.calls.last.request.content)["stream_options"]["include_usage"] is True


async def test_a_client_that_goes_away_is_recorded_as_disconnected(upstream_mock, routes_file, finished):
    closed = asyncio.Event()

    async def slow_tokens():
        try:
            yield sse(delta("a", role="assistant"), done=False)
            await asyncio.sleep(30)
        finally:
            closed.set()  # the upstream response was closed

    upstream_mock.post("/v1/chat/completions").mock(return_value=httpx.Response(
        200, content=slow_tokens(), headers={"content-type": "text/event-stream"}))
    r = await AsyncClient().post("/api/chat", {"model": "coder", "messages": MSGS},
                                 content_type="application/json")
    received = []

    async def client():
        async for part in r.streaming_content:
            received.append(part)

    task = asyncio.create_task(client())
    while not received:
        await asyncio.sleep(0.01)
    task.cancel()  # what Django's ASGI handler does when the client disconnects
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.wait_for(closed.wait(), 5)
    assert finished[0].outcome == DISCONNECTED and finished[0].status == 499
    assert finished[0].response_text == "a"


async def _lines(response):
    buffer = b"".join([part async for part in response.streaming_content])
    for line in buffer.splitlines():
        if line:
            yield line


async def test_an_event_that_is_not_an_object_is_an_upstream_error(upstream_mock, routes_file):
    upstream_mock.post("/v1/chat/completions").mock(return_value=httpx.Response(
        200, content=b"data: [1, 2]\n\n", headers={"content-type": "text/event-stream"}))
    r = await AsyncClient().post("/api/chat", {"model": "coder", "messages": MSGS, "stream": False},
                                 content_type="application/json")
    assert r.status_code == 502 and "unexpected event" in orjson.loads(r.content)["error"]


async def test_stream_null_means_the_dialects_default(upstream_mock, routes_file):
    upstream_mock.post("/v1/chat/completions").mock(return_value=stream_reply(delta("Hi", finish="stop")))
    r = await AsyncClient().post("/api/chat", {"model": "coder", "messages": MSGS, "stream": None},
                                 content_type="application/json")
    assert r.status_code == 200 and r.streaming  # Ollama streams unless told not to


async def test_with_passthrough_and_a_fallback_lmstudio_ids_pass_and_unknown_names_fall_back(
        upstream_mock, routes_file, settings):
    routes_file.write_text("defaults: {passthrough: true, fallback: coder}\n"
                           "aliases:\n  coder: qwen2.5-7b-instruct\n")
    use_state(settings)
    upstream_mock.get("/api/v0/models").mock(return_value=httpx.Response(
        200, json={"data": [{"id": "qwen2.5-7b-instruct"}, {"id": "qwen/qwen3-4b"}]}))
    route = upstream_mock.post("/v1/chat/completions").mock(
        side_effect=lambda request: stream_reply(delta("Hi", finish="stop")))
    for requested, served in (("qwen/qwen3-4b", "qwen/qwen3-4b"), ("gpt-4o", "qwen2.5-7b-instruct")):
        r = await AsyncClient().post("/api/chat", {"model": requested, "messages": MSGS, "stream": False},
                                     content_type="application/json")
        assert r.status_code == 200
        assert orjson.loads(route.calls.last.request.content)["model"] == served
