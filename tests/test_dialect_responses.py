"""The OpenAI Responses dialect as pure functions: request translation tables, and the event stream
a sequence of LM Studio chunks becomes."""
import pytest

from routing.core.errors import BadRequest, UpstreamError
from routing.core.exchange import Timing
from routing.dialects import responses
from tests.upstream_stubs import delta_chunk as chunk


def build(**body):
    return responses.to_openai({"model": "m", "input": "hi", **body})


def msg(role, *texts, kind="input_text"):
    return {"type": "message", "role": role, "content": [{"type": kind, "text": t} for t in texts]}


@pytest.mark.parametrize("extra, expected", [
    ({}, {"messages": [{"role": "user", "content": "hi"}]}),
    ({"instructions": "Be kind."}, {"messages": [{"role": "system", "content": "Be kind."},
                                                 {"role": "user", "content": "hi"}]}),
    ({"max_output_tokens": 50, "temperature": 0.3, "top_p": 0.8}, {"max_tokens": 50, "temperature": 0.3, "top_p": 0.8}),
    ({"reasoning": {"effort": "minimal", "summary": "auto"}}, {"reasoning_effort": "low"}),
    ({"reasoning": {"effort": "xhigh"}}, {"reasoning_effort": "high"}),
    ({"text": {"format": {"type": "json_object"}}},
     {"response_format": {"type": "json_schema", "json_schema": {"name": "response", "schema": {"type": "object"}}}}),
    ({"text": {"format": {"type": "text"}, "verbosity": "low"}}, {"response_format": None}),
    ({"store": False, "include": ["reasoning.encrypted_content"], "prompt_cache_key": "k",
      "client_metadata": {"a": "b"}, "parallel_tool_calls": True, "metadata": {}, "truncation": "auto"}, {}),
    ({}, {"stream": True, "stream_options": {"include_usage": True}}),
])
def test_it_translates_request_fields(extra, expected):
    out = build(**extra)
    assert {k: out.get(k) for k in expected} == expected


@pytest.mark.parametrize("items, expected", [
    ([msg("developer", "D1"), msg("system", "S"), msg("user", "u")],
     [{"role": "system", "content": "D1\n\nS"}, {"role": "user", "content": "u"}]),
    ([{"role": "user", "content": "plain"}], [{"role": "user", "content": "plain"}]),
    ([msg("user", "look"), {"role": "user", "content": [{"type": "input_image", "image_url": "data:image/png;base64,QQ=="}]}],
     [{"role": "user", "content": "look"},
      {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,QQ=="}}]}]),
    ([msg("user", "u"), msg("assistant", "let me check", kind="output_text"),
      {"type": "function_call", "call_id": "c1", "name": "f", "arguments": '{"a":1}'},
      {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
      {"type": "function_call_output", "call_id": "c1", "output": "one"},
      {"type": "function_call_output", "call_id": "c2", "output": [{"type": "input_text", "text": "two"}]}],
     [{"role": "user", "content": "u"},
      {"role": "assistant", "content": "let me check", "tool_calls": [
          {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}},
          {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "{}"}}]},
      {"role": "tool", "tool_call_id": "c1", "content": "one"}, {"role": "tool", "tool_call_id": "c2", "content": "two"}]),
    ([{"type": "reasoning", "id": "rs", "summary": [], "encrypted_content": "x"}, msg("user", "u")],
     [{"role": "user", "content": "u"}]),
])
def test_it_translates_input_items(items, expected):
    assert build(input=items)["messages"] == expected


def test_only_function_tools_reach_lm_studio():
    out = build(tools=[{"type": "function", "name": "f", "parameters": {"type": "object"}, "strict": True},
                       {"type": "web_search"}, {"type": "namespace", "name": "ns", "tools": []},
                       {"type": "custom", "name": "apply_patch"}],
                tool_choice={"type": "function", "name": "f"})
    assert out["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert "tools" not in build(tools=[{"type": "web_search"}], tool_choice="required")


@pytest.mark.parametrize("body, words", [
    ({"input": "x", "previous_response_id": "resp_1"}, "stateless"),
    ({}, "input"),
    ({"input": []}, "input"),
    ({"input": [{"type": "message", "role": "robot", "content": "x"}]}, "input[0].role"),
    ({"input": [{"type": "item_reference", "id": "x"}]}, "stateless"),
    ({"input": [{"type": "mystery"}]}, "'mystery'"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "call_id"),
    ({"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]}, "'input_file'"),
    ({"input": "x", "max_output_tokens": "lots"}, "max_output_tokens"),
    ({"input": "x", "instructions": 5}, "instructions"),
])
def test_bad_requests_name_the_field(body, words):
    with pytest.raises(BadRequest) as raised:
        responses.to_openai({"model": "m", **body})
    assert words in raised.value.message


def test_a_stream_adds_fills_and_finishes_items_in_order():
    t = responses.Translator("coder", {"instructions": "I"})
    events = [e for c in [
        chunk({"role": "assistant", "reasoning": "hm"}), chunk({"content": "Hi"}),
        chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": '{"a":'}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
        chunk(finish="tool_calls"), chunk(usage={"prompt_tokens": 3, "completion_tokens": 4})] for e in t.feed(c)]
    events += t.finish(Timing())
    assert [e["type"] for e in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.reasoning_summary_part.added", "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done", "response.reasoning_summary_part.done", "response.output_item.done",
        "response.output_item.added", "response.content_part.added", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.delta",
        "response.function_call_arguments.done", "response.output_item.done", "response.completed"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.done"] == [0, 1, 2]
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["instructions"] == "I" and final["output_text"] == "Hi"
    assert [i["type"] for i in final["output"]] == ["reasoning", "message", "function_call"]
    assert final["output"][2]["arguments"] == '{"a":1}' and final["output"][2]["call_id"] == "c1"
    assert final["usage"]["total_tokens"] == 7
    whole = t.whole(Timing())
    assert [i["type"] for i in whole["output"]] == ["reasoning", "message", "function_call"]


def test_a_cut_answer_is_incomplete_and_a_failure_is_response_failed():
    t = responses.Translator("coder", {})
    t.feed(chunk({"content": "x"}, finish="length"))
    assert t.finish(Timing())[-1]["type"] == "response.incomplete"
    t = responses.Translator("coder", {})
    events = t.failed(UpstreamError("LM Studio closed the stream"))
    assert [e["type"] for e in events] == ["response.created", "response.in_progress", "response.failed"]
    assert events[-1]["response"]["error"]["message"] == "LM Studio closed the stream"
    assert responses.DIALECT.frame(events[-1]).startswith(b"event: response.failed\ndata: ")
