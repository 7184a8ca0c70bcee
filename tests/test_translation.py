"""Pure translation functions: Ollama requests to OpenAI, overrides, and OpenAI chunks to Ollama."""
import base64

import pytest

from routing.config.overrides import apply_route, apply_system, options_to_params
from routing.config.table import Defaults, Route, RouteAlias
from routing.core.errors import BadRequest
from routing.core.exchange import Timing
from routing.dialects.ollama import Translator as OllamaTranslator
from routing.dialects.ollama import (
    chat_to_openai,
    generate_to_openai,
    keep_alive_ttl,
    ollama_messages_to_openai,
    response_format,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
JPEG = base64.b64encode(b"\xff\xd8\xff\xe0" + b"\0" * 16).decode()


@pytest.mark.parametrize("options, params", [
    ({"num_predict": 128}, {"max_tokens": 128}),
    ({"num_predict": -1}, {}),
    ({"temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 7},
     {"temperature": 0.5, "top_p": 0.9, "top_k": 40, "min_p": 0.05, "seed": 7}),
    ({"stop": "END"}, {"stop": ["END"]}),
    ({"repeat_penalty": 1.1, "presence_penalty": 0.1, "frequency_penalty": 0.2},
     {"repeat_penalty": 1.1, "presence_penalty": 0.1, "frequency_penalty": 0.2}),
    ({"num_ctx": 8192, "num_gpu": 1, "mirostat": 0}, {}),
])
def test_it_maps_ollama_options_to_lmstudio_parameters(options, params):
    assert options_to_params(options) == params


def test_it_maps_num_predict_to_max_tokens_in_a_chat_request():
    body = chat_to_openai({"model": "m", "messages": [], "options": {"num_predict": 5}})
    assert body["max_tokens"] == 5 and body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}


@pytest.mark.parametrize("body, message", [
    ({"messages": "hi"}, "messages must be a list"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role must be one of"),
    ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content must be a string"),
    ({"messages": [{"role": "user", "content": "x", "images": ["%%%"]}]}, "messages[0].images[0]: not valid base64"),
    ({"messages": [{"role": "user", "content": "x", "images": [base64.b64encode(b"hello").decode()]}]},
     "not a PNG, JPEG"),
    ({"messages": [], "options": {"temperature": "hot"}}, "options: temperature must be a number"),
    ({"messages": [], "options": []}, "options must be an object"),
    ({"messages": [], "format": 5}, "format must be"),
])
def test_bad_chat_fields_are_named(body, message):
    with pytest.raises(BadRequest) as info:
        chat_to_openai({"model": "m", **body})
    assert message in info.value.message


def test_images_become_data_urls_with_sniffed_mime_types():
    [msg] = ollama_messages_to_openai([{"role": "user", "content": "what?", "images": [PNG, JPEG]}])
    assert msg["content"][0] == {"type": "text", "text": "what?"}
    assert msg["content"][1]["image_url"]["url"] == f"data:image/png;base64,{PNG}"
    assert msg["content"][2]["image_url"]["url"] == f"data:image/jpeg;base64,{JPEG}"


def test_tool_calls_get_string_arguments_and_tool_results_their_ids():
    out = ollama_messages_to_openai([
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
            {"function": {"name": "get_time", "arguments": {}}}]},
        {"role": "tool", "tool_name": "get_time", "content": "noon"},
        {"role": "tool", "tool_name": "get_weather", "content": "sunny"},
    ])
    calls = out[1]["tool_calls"]
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city":"Paris"}'}
    assert calls[0]["type"] == "function"
    assert out[2]["tool_call_id"] == calls[1]["id"]
    assert out[3]["tool_call_id"] == calls[0]["id"]


@pytest.mark.parametrize("fmt, schema", [("json", {"type": "object"}),
                                         ({"type": "object", "properties": {"a": {"type": "string"}}},
                                          {"type": "object", "properties": {"a": {"type": "string"}}})])
def test_format_becomes_a_json_schema_response_format(fmt, schema):
    assert response_format(fmt)["json_schema"]["schema"] == schema
    assert response_format(fmt)["type"] == "json_schema"


def test_generate_builds_system_and_user_messages():
    body = generate_to_openai({"model": "m", "prompt": "Why?", "system": "Be brief."})
    assert body["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Why?"}]


@pytest.mark.parametrize("keep_alive, result", [(None, (False, None)), ("5m", (True, 300)),
                                                (-1, (True, None)), (0, (True, 1))])
def test_keep_alive_becomes_ttl(keep_alive, result):
    assert keep_alive_ttl({"keep_alive": keep_alive}) == result


def test_a_bad_keep_alive_is_a_bad_request():
    with pytest.raises(BadRequest, match="keep_alive"):
        keep_alive_ttl({"keep_alive": "later"})


ALIAS = RouteAlias(name="coder", model="qwen", ttl=1800, temperature=0.2, system="Be terse.",
              options={"top_p": 0.9, "num_predict": 64})


def test_alias_overrides_replace_client_values():
    body = {"model": "coder", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.9,
            "top_p": 0.1, "max_tokens": 1000}
    out = apply_route(body, Route("coder", "qwen", ALIAS), Defaults(ttl=600))
    assert (out["model"], out["temperature"], out["top_p"], out["max_tokens"], out["ttl"]) == (
        "qwen", 0.2, 0.9, 64, 1800)
    assert out["messages"][0] == {"role": "system", "content": "Be terse."}
    assert body["model"] == "coder"  # the input is not changed


@pytest.mark.parametrize("client_ttl, sent, alias_ttl, default_ttl, expected", [
    (60, True, 1800, 600, 60),        # the client's keep_alive wins
    (None, False, 1800, 600, 1800),   # then the alias
    (None, False, None, 600, 600),    # then the defaults
    (None, False, None, None, None),  # then LM Studio's own default
    (None, True, 1800, 600, None),    # keep_alive: -1 (forever) sends no ttl at all
])
def test_ttl_precedence(client_ttl, sent, alias_ttl, default_ttl, expected):
    alias = RouteAlias(name="a", model="m", ttl=alias_ttl)
    out = apply_route({"messages": []}, Route("a", "m", alias), Defaults(ttl=default_ttl), client_ttl, sent)
    assert out.get("ttl") == expected


CLIENT_SYSTEM = [{"role": "system", "content": "client"}, {"role": "user", "content": "hi"}]


@pytest.mark.parametrize("mode, roles_contents", [
    ("prepend", [("system", "alias"), ("system", "client"), ("user", "hi")]),
    ("replace", [("system", "alias"), ("user", "hi")]),
    ("default", [("system", "client"), ("user", "hi")]),
])
def test_system_modes(mode, roles_contents):
    alias = RouteAlias(name="a", model="m", system="alias", system_mode=mode)
    out = apply_system(CLIENT_SYSTEM, alias)
    assert [(m["role"], m["content"]) for m in out] == roles_contents


def test_default_mode_adds_the_system_prompt_when_the_client_sent_none():
    alias = RouteAlias(name="a", model="m", system="alias", system_mode="default")
    assert apply_system([{"role": "user", "content": "hi"}], alias)[0]["content"] == "alias"


def chunk(delta=None, finish=None, usage=None, choices=True):
    event = {"choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []}
    if usage:
        event["usage"] = usage
    return event


def test_stream_chunks_become_ollama_chunks_with_role_and_real_metrics():
    t = OllamaTranslator("coder", "chat")
    out = t.feed(chunk({"role": "assistant", "content": "Hel"})) + t.feed(chunk({"content": "lo"}))
    assert [c["message"] for c in out] == [{"role": "assistant", "content": "Hel"},
                                           {"role": "assistant", "content": "lo"}]
    assert all(c["model"] == "coder" and c["done"] is False for c in out)
    assert t.feed(chunk(finish="length")) == []
    assert t.feed(chunk(choices=False, usage={"prompt_tokens": 12, "completion_tokens": 2})) == []
    timing = Timing(start=0, first_token=1_000, end=5_000)
    [final] = t.finish(timing)
    assert final["done"] is True and final["done_reason"] == "length"
    assert final["message"] == {"role": "assistant", "content": ""}
    assert (final["prompt_eval_count"], final["eval_count"]) == (12, 2)
    assert (final["total_duration"], final["prompt_eval_duration"], final["eval_duration"]) == (5000, 1000, 4000)


def test_fragmented_tool_calls_are_sent_whole_with_object_arguments():
    t = OllamaTranslator("coder", "chat")
    out = t.feed(chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                         "function": {"name": "get_weather", "arguments": ""}}]}))
    for piece in ['{"ci', 'ty": ', '"Paris"}']:
        out += t.feed(chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}))
    assert out == []
    out = t.feed(chunk(finish="tool_calls"))
    assert out[0]["message"]["tool_calls"] == [
        {"id": "call_1", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]
    final = t.finish(Timing(start=0, end=1))
    assert len(final) == 1 and final[0]["done_reason"] == "stop"


def test_reasoning_goes_to_thinking_and_whole_assembles_the_answer():
    t = OllamaTranslator("think", "chat")
    t.feed(chunk({"reasoning": "Hmm."}))
    t.feed(chunk({"content": "42"}))
    whole = t.whole(Timing(start=0, end=1))
    assert whole["message"] == {"role": "assistant", "content": "42", "thinking": "Hmm."}
    assert whole["done"] is True


def test_generate_chunks_carry_response():
    t = OllamaTranslator("coder", "generate")
    [c] = t.feed(chunk({"content": "Hi"}))
    assert c["response"] == "Hi" and "message" not in c
    assert t.whole(Timing(start=0, end=1))["response"] == "Hi"
