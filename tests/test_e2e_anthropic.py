"""End to end: the official `anthropic` client on /v1/messages -> the proxy under Daphne -> the fake
LM Studio (which only speaks OpenAI chat: everything here is translated both ways)."""
import base64

import anthropic
import httpx
import pytest

from tests.test_e2e_history import find_log

pytestmark = pytest.mark.e2e

WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


@pytest.fixture
def client(proxy_server):
    return anthropic.Anthropic(base_url=proxy_server.url, api_key="unused", timeout=30, max_retries=0)


def upstream(fake) -> dict:
    [body] = [r["json"] for r in fake.requests("/v1/chat/completions")]
    return body


def test_a_message_through_an_alias(client, fake):
    message = client.messages.create(model="coder", max_tokens=100, extra_body={"temperature": 0.7},
                                     system=[{"type": "text", "text": "Be brief.",
                                              "cache_control": {"type": "ephemeral"}}],
                                     messages=[{"role": "user", "content": "hi there"}])
    assert message.type == "message" and message.role == "assistant" and message.model == "coder"
    assert [b.type for b in message.content] == ["text"]
    assert message.content[0].text == "Hello from qwen2.5-7b-instruct! You said: hi there"
    assert message.stop_reason == "end_turn" and message.id.startswith("msg_")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 7
    sent = upstream(fake)
    assert sent["model"] == "qwen2.5-7b-instruct" and sent["max_tokens"] == 100
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.9 and sent["ttl"] == 1800  # the alias wins
    assert sent["messages"][:2] == [{"role": "system", "content": "You are terse."},
                                    {"role": "system", "content": "Be brief."}]


def test_a_streamed_message_with_thinking(client, fake):
    with client.messages.stream(model="thinker", max_tokens=200,
                                messages=[{"role": "user", "content": "why?"}]) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "Hello from qwen3-4b-thinking! You said: why?"
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "Let me think." and final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_the_raw_stream_has_anthropics_event_order(proxy_server, fake):
    with httpx.stream("POST", f"{proxy_server.url}/v1/messages?beta=true", timeout=30,
                      headers={"anthropic-version": "2023-06-01", "anthropic-beta": "interleaved-thinking-2025-05-14"},
                      json={"model": "tiny", "max_tokens": 50, "stream": True,
                            "messages": [{"role": "user", "content": "one two"}]}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event: ")]
    assert events[:4] == ["message_start", "ping", "content_block_start", "content_block_delta"]
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]


def test_a_tool_round_trip(client, fake):
    first = client.messages.create(model="coder", max_tokens=100, tools=[WEATHER],
                                   messages=[{"role": "user", "content": "weather in Paris?"}])
    assert first.stop_reason == "tool_use"
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Paris"}
    sent = upstream(fake)
    assert sent["tools"] == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city", "parameters": WEATHER["input_schema"]}}]
    fake.reset()
    second = client.messages.create(model="coder", max_tokens=100, tools=[WEATHER], messages=[
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name, "input": call.input}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": [{"type": "text", "text": "sunny"}]}]}])
    assert second.content[0].text == "The tool said: sunny"
    messages = upstream(fake)["messages"]
    assert messages[-2]["tool_calls"][0]["id"] == call.id and messages[-1] == {
        "role": "tool", "tool_call_id": call.id, "content": "sunny"}


def test_a_streamed_tool_call(client, fake):
    with client.messages.stream(model="coder", max_tokens=100, tools=[WEATHER], tool_choice={"type": "any"},
                                messages=[{"role": "user", "content": "weather in Paris?"}]) as stream:
        final = stream.get_final_message()
    [call] = final.content
    assert call.type == "tool_use" and call.input == {"city": "Paris"} and final.stop_reason == "tool_use"
    assert upstream(fake)["tool_choice"] == "required"


def test_an_image_is_sent_as_a_data_url(client, fake):
    client.messages.create(model="vision", max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "text", "text": "what is it?"}]}])
    [parts] = [m["content"] for m in upstream(fake)["messages"] if m["role"] == "user"]
    assert parts == [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                     {"type": "text", "text": "what is it?"}]


def test_claude_codes_request_shape(client, fake):
    """System blocks with cache_control, a system message after the user turn, adaptive thinking,
    server tools among client tools, and the beta fields Claude Code sends."""
    client.messages.create(
        model="coder", max_tokens=32000, stream=False,
        system=[{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "<reminder>"}, {"type": "text", "text": "say hi"}]},
                  {"role": "system", "content": [{"type": "text", "text": "env: linux",
                                                  "cache_control": {"type": "ephemeral"}}]}],
        tools=[WEATHER, {"type": "web_search_20250305", "name": "web_search", "max_uses": 5}],
        metadata={"user_id": "opaque"}, thinking={"type": "adaptive", "display": "omitted"},
        output_config={"effort": "high"},
        extra_body={"context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]}},
        extra_headers={"anthropic-beta": "claude-code-20250219,context-management-2025-06-27"})
    sent = upstream(fake)
    assert sent["messages"][1] == {"role": "system", "content": "A\n\nB\n\nenv: linux"}
    assert sent["messages"][2] == {"role": "user", "content": "<reminder>\nsay hi"}
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather"]
    assert sent["reasoning_effort"] == "high" and sent["max_tokens"] == 32000


@pytest.mark.parametrize("body, status, kind, words", [
    ({"model": "nope", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}, 404,
     "not_found_error", "nope"),
    ({"model": "coder", "messages": [{"role": "user", "content": "x"}]}, 400, "invalid_request_error", "max_tokens"),
    ({"model": "coder", "max_tokens": 10}, 400, "invalid_request_error", "messages"),
    ({"model": "coder", "max_tokens": 10, "stream": "yes", "messages": [{"role": "user", "content": "x"}]}, 400,
     "invalid_request_error", "stream"),
])
def test_errors_in_anthropics_shape(proxy_server, fake, body, status, kind, words):
    for stream in (False, True):
        response = httpx.post(f"{proxy_server.url}/v1/messages", json={**body, "stream": body.get("stream", stream)})
        assert response.status_code == status
        error = response.json()
        assert error["type"] == "error" and error["error"]["type"] == kind and words in error["error"]["message"]


def test_bad_json_and_sdk_errors(proxy_server, client, fake):
    response = httpx.post(f"{proxy_server.url}/v1/messages", content=b"{oops",
                          headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="missing", max_tokens=5, messages=[{"role": "user", "content": "x"}])


def test_a_failure_mid_stream_is_an_error_event(client, fake):
    fake.script(tokens=20, cut_after=3)
    with pytest.raises(anthropic.APIStatusError) as raised:
        with client.messages.stream(model="coder", max_tokens=50,
                                    messages=[{"role": "user", "content": "x"}]) as stream:
            for _ in stream:
                pass
    assert "closed" in str(raised.value)


def test_the_history_shows_the_exchange(client, proxy_server, fake):
    raw = client.messages.with_raw_response.create(model="thinker", max_tokens=100, tools=[WEATHER],
                                                   messages=[{"role": "user", "content": "weather in Paris?"}])
    row = find_log(proxy_server, raw.headers["x-request-id"])
    assert (row["api"], row["endpoint"], row["alias"], row["status"]) == ("anthropic", "/v1/messages", "thinker", 200)
    assert "get_weather" in row["tool_calls"] and row["thinking"] == "Let me think."
    assert row["completion_tokens"] > 0 and "weather in Paris?" in row["request_body"]
