"""The Anthropic Messages dialect as pure functions: request translation tables, and the event stream
a sequence of LM Studio chunks becomes."""
import pytest

from routing.core.errors import BadRequest, UpstreamError
from routing.core.exchange import Timing
from routing.dialects import anthropic
from tests.upstream_stubs import delta_chunk as chunk

USER = {"role": "user", "content": "hi"}


def build(**body):
    return anthropic.to_openai({"model": "m", "max_tokens": 100, "messages": [USER], **body})


@pytest.mark.parametrize("extra, expected", [
    ({}, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}),
    ({"system": "S"}, {"messages": [{"role": "system", "content": "S"}, USER]}),
    ({"system": [{"type": "text", "text": "A"}, {"type": "text", "text": "B", "cache_control": {"type": "ephemeral"}}]},
     {"messages": [{"role": "system", "content": "A\n\nB"}, USER]}),
    ({"temperature": 0.5, "top_p": 0.9, "top_k": 40}, {"temperature": 0.5, "top_p": 0.9, "top_k": 40}),
    ({"stop_sequences": ["END"]}, {"stop": ["END"]}),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, {"reasoning_effort": "low"}),
    ({"thinking": {"type": "enabled", "budget_tokens": 10000}}, {"reasoning_effort": "medium"}),
    ({"thinking": {"type": "enabled", "budget_tokens": 32000}}, {"reasoning_effort": "high"}),
    ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}}, {"reasoning_effort": "high"}),
    ({"metadata": {"user_id": "x"}, "context_management": {"edits": []}, "service_tier": "auto"}, {}),
    ({}, {"stream": True, "stream_options": {"include_usage": True}}),
])
def test_it_translates_request_fields(extra, expected):
    out = build(**extra)
    assert {k: out.get(k) for k in expected} == expected


@pytest.mark.parametrize("message, expected", [
    ({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
     [{"role": "user", "content": "a\nb"}]),
    ({"role": "user", "content": [{"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "QQ=="}},
                                  {"type": "text", "text": "?"}]},
     [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,QQ=="}},
                                   {"type": "text", "text": "?"}]}]),
    ({"role": "assistant", "content": [{"type": "thinking", "thinking": "hm", "signature": "s"},
                                       {"type": "text", "text": "ok"},
                                       {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
     [{"role": "assistant", "content": "ok", "tool_calls": [
         {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}]}]),
    ({"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "42"},
                                  {"type": "tool_result", "tool_use_id": "t2", "is_error": True,
                                   "content": [{"type": "text", "text": "boom"}]},
                                  {"type": "text", "text": "go on"}]},
     [{"role": "tool", "tool_call_id": "t1", "content": "42"},
      {"role": "tool", "tool_call_id": "t2", "content": "Error: boom"},
      {"role": "user", "content": "go on"}]),
])
def test_it_translates_content_blocks(message, expected):
    assert build(messages=[message])["messages"] == expected


def test_system_messages_anywhere_join_the_leading_system_message():
    out = build(system="S", messages=[USER, {"role": "system", "content": [{"type": "text", "text": "env"}]},
                                      {"role": "assistant", "content": "hello"}])
    assert out["messages"] == [{"role": "system", "content": "S\n\nenv"}, USER,
                               {"role": "assistant", "content": "hello"}]


def test_server_tools_are_left_out_and_tool_choice_maps():
    tools = [{"name": "f", "input_schema": {"type": "object"}, "cache_control": {"type": "ephemeral"}},
             {"type": "web_search_20250305", "name": "web_search"}, {"type": "bash_20250124", "name": "bash"}]
    out = build(tools=tools, tool_choice={"type": "tool", "name": "f", "disable_parallel_tool_use": True})
    assert out["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}} and out["parallel_tool_calls"] is False
    assert build(tools=tools, tool_choice={"type": "any"})["tool_choice"] == "required"
    assert "tool_choice" not in build(tool_choice={"type": "auto"})


@pytest.mark.parametrize("body, words", [
    ({"messages": [USER]}, "max_tokens"),
    ({"max_tokens": 0, "messages": [USER]}, "max_tokens"),
    ({"max_tokens": 5, "messages": []}, "messages"),
    ({"max_tokens": 5, "messages": [{"role": "bot", "content": "x"}]}, "messages[0].role"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]}, "'video'"),
    ({"max_tokens": 5, "messages": [USER], "system": 3}, "system"),
    ({"max_tokens": 5, "messages": [USER], "temperature": "hot"}, "temperature"),
    ({"max_tokens": 5, "messages": [USER], "tools": [{"name": "f"}]}, "input_schema"),
    ({"max_tokens": 5, "messages": [USER], "tool_choice": {"type": "maybe"}}, "tool_choice"),
    ({"max_tokens": 5, "messages": [USER], "thinking": {"type": "sometimes"}}, "thinking"),
    ({"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/tiff", "data": "QQ=="}}]}]}, "media_type"),
])
def test_bad_requests_name_the_field(body, words):
    with pytest.raises(BadRequest) as raised:
        anthropic.to_openai({"model": "m", **body})
    assert words in raised.value.message


def stream_of(chunks, **kw):
    t = anthropic.Translator("coder", **kw)
    events = [e for c in chunks for e in t.feed(c)] + t.finish(Timing())
    return t, events


def test_a_stream_opens_fills_and_closes_blocks_in_order():
    t, events = stream_of([
        chunk({"role": "assistant", "reasoning": "hm"}), chunk({"content": "Hi"}), chunk({"content": "!"}),
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk(finish="tool_calls"), chunk(usage={"prompt_tokens": 5, "completion_tokens": 6})])
    assert [(e["type"], e.get("index")) for e in events] == [
        ("message_start", None), ("ping", None),
        ("content_block_start", 0), ("content_block_delta", 0), ("content_block_stop", 0),
        ("content_block_start", 1), ("content_block_delta", 1), ("content_block_delta", 1), ("content_block_stop", 1),
        ("content_block_start", 2), ("content_block_delta", 2), ("content_block_delta", 2), ("content_block_stop", 2),
        ("message_delta", None), ("message_stop", None)]
    assert events[2]["content_block"]["type"] == "thinking" and events[3]["delta"] == {"type": "thinking_delta", "thinking": "hm"}
    assert events[9]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert events[10]["delta"] == {"type": "input_json_delta", "partial_json": '{"a":'}
    assert events[-2]["delta"]["stop_reason"] == "tool_use" and events[-2]["usage"] == {"input_tokens": 5, "output_tokens": 6}
    whole = t.whole(Timing())
    assert [b["type"] for b in whole["content"]] == ["thinking", "text", "tool_use"]
    assert whole["content"][2]["input"] == {"a": 1} and whole["usage"] == {"input_tokens": 5, "output_tokens": 6}


@pytest.mark.parametrize("finish, reason", [("stop", "end_turn"), ("length", "max_tokens"), (None, "end_turn")])
def test_stop_reasons(finish, reason):
    _, events = stream_of([chunk({"content": "x"}), chunk(finish=finish)])
    assert events[-2]["delta"]["stop_reason"] == reason


def test_disabled_thinking_is_not_passed_on_and_an_empty_stream_still_opens():
    t, events = stream_of([chunk({"reasoning": "secret"}), chunk({"content": "ok"})], thinking=False)
    assert [e["type"] for e in events if e["type"] == "content_block_start"] == ["content_block_start"]
    assert t.answer.thinking == []
    _, empty = stream_of([])
    assert [e["type"] for e in empty] == ["message_start", "ping", "message_delta", "message_stop"]


def test_a_failure_is_an_error_event_without_message_stop():
    t = anthropic.Translator("coder")
    t.feed(chunk({"content": "x"}))
    [event] = t.failed(UpstreamError("LM Studio closed the stream"))
    assert event == {"type": "error", "error": {"type": "api_error", "message": "LM Studio closed the stream"}}
    assert anthropic.DIALECT.frame(event).startswith(b"event: error\ndata: ")
