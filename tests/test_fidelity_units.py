"""Table-driven tests of the pure functions behind API fidelity: embeddings, generate modes, think,
load/unload detection, model descriptions; and the graceful unload fallback on an older LM Studio."""
import asyncio
import concurrent.futures
import io
from datetime import datetime, timezone

import httpx
import pytest

from routing.api import listings as model_info
from routing.config.loader import load_routes
from routing.config.table import RouteTable
from routing.core.errors import BadRequest, EndpointMissing, NotSupported
from routing.core.exchange import Timing
from routing.dialects import embeddings
from routing.dialects.ollama import Translator as OllamaTranslator
from routing.dialects.ollama import (
    generate_to_openai,
    generate_upstream_path,
    lifecycle_action,
    lifecycle_answer,
    openai_tools,
    think_params,
)
from routing.lmstudio.catalog import merge_native
from routing.lmstudio.client import check_response

# --- embeddings ----------------------------------------------------------------------------------

@pytest.mark.parametrize("body, upstream", [
    ({"input": "a"}, {"input": ["a"]}),
    ({"input": ["a", "b"], "truncate": True}, {"input": ["a", "b"]}),
    ({"input": ["a"], "dimensions": 4}, {"input": ["a"], "dimensions": 4}),
])
def test_embed_requests_become_openai_embedding_requests(body, upstream):
    assert embeddings.embed_request(body) == upstream


@pytest.mark.parametrize("function, body, message", [
    (embeddings.embed_request, {}, "input is required"),
    (embeddings.embed_request, {"input": [1]}, "input must be a string or a list of strings"),
    (embeddings.embed_request, {"input": "a", "truncate": "no"}, "truncate must be true or false"),
    (embeddings.embed_request, {"input": "a", "dimensions": 0}, "dimensions must be a positive integer"),
    (embeddings.legacy_embeddings_request, {}, "prompt is required"),
    (embeddings.legacy_embeddings_request, {"prompt": 1}, "prompt must be a string"),
    (embeddings.openai_embeddings_request, {"input": {"a": 1}}, "input must be"),
])
def test_bad_embedding_fields_are_named(function, body, message):
    with pytest.raises(BadRequest) as info:
        function(body)
    assert message in info.value.message


ANSWER = {"data": [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [0.6, 0.8, 0.0]}],
          "usage": {"prompt_tokens": 3}, "model": "upstream-id"}


def test_embed_answers_keep_input_order_and_count_prompt_tokens():
    out = embeddings.embed_answer(ANSWER, {}, "embedder", Timing(start=0, end=10))
    assert out == {"model": "embedder", "embeddings": [[0.6, 0.8, 0.0], [0.0, 1.0]], "total_duration": 10,
                   "load_duration": 0, "prompt_eval_count": 3}


@pytest.mark.parametrize("vector, dims, expected", [
    ([0.6, 0.8], None, [0.6, 0.8]),
    ([0.6, 0.8], 4, [0.6, 0.8]),
    ([3.0, 4.0, 5.0], 2, [0.6, 0.8]),
])
def test_dimensions_shorten_and_renormalise(vector, dims, expected):
    assert embeddings.shortened(vector, dims) == pytest.approx(expected)


def test_legacy_and_openai_embedding_answers():
    assert embeddings.legacy_embeddings_answer(ANSWER, {}, "e", Timing()) == {"embedding": [0.6, 0.8, 0.0]}
    assert embeddings.openai_embeddings_answer(ANSWER, {}, "e", Timing())["model"] == "e"


# --- generate, think, lifecycle ------------------------------------------------------------------

@pytest.mark.parametrize("body, path, key", [
    ({"prompt": "hi"}, "/v1/chat/completions", "messages"),
    ({"prompt": "[INST]hi", "raw": True, "system": "ignored"}, "/v1/completions", "prompt"),
])
def test_raw_generate_goes_to_text_completions(body, path, key):
    built = generate_to_openai(body)
    assert generate_upstream_path(built) == path and key in built
    if body.get("raw"):
        assert built["prompt"] == "[INST]hi" and "messages" not in built


@pytest.mark.parametrize("body, message", [
    ({"prompt": "x", "suffix": "y"}, "does not support insert"),
    ({"prompt": "x", "suffix": 3}, "suffix must be a string"),
    ({"prompt": "x", "system": 3}, "system must be a string"),
    ({"prompt": "x", "raw": 1}, "raw must be true or false"),
    ({"prompt": "x", "raw": True, "images": ["AAAA"]}, "images cannot be sent with raw"),
])
def test_bad_generate_fields_are_named(body, message):
    with pytest.raises(BadRequest) as info:
        generate_to_openai(body)
    assert message in info.value.message


@pytest.mark.parametrize("think, params", [
    (None, {}), (True, {}), (False, {}),
    ("low", {"reasoning_effort": "low"}), ("medium", {"reasoning_effort": "medium"}),
    ("high", {"reasoning_effort": "high"}),
    ("max", {"reasoning_effort": "high"}),  # Ollama's fourth level: the highest LM Studio takes
])
def test_think_levels_become_reasoning_effort(think, params):
    assert think_params(think) == params


@pytest.mark.parametrize("think", ["maximum", "MAX", "", 3, ["high"]])
def test_an_unknown_think_level_is_a_bad_request(think):
    with pytest.raises(BadRequest, match='think must be true, false, "low", "medium", "high" or "max"'):
        think_params(think)


@pytest.mark.parametrize("kind, body, action", [
    ("chat", {"messages": []}, "load"),
    ("chat", {}, "load"),
    ("chat", {"messages": [], "keep_alive": 0}, "unload"),
    ("chat", {"messages": [], "keep_alive": "0s"}, "unload"),
    ("chat", {"messages": [], "keep_alive": "5m"}, "load"),
    ("chat", {"messages": [{"role": "user", "content": "x"}], "keep_alive": 0}, None),
    ("generate", {"prompt": ""}, "load"),
    ("generate", {"prompt": "", "keep_alive": 0}, "unload"),
    ("generate", {"prompt": "", "images": ["x"]}, None),
    ("generate", {"prompt": "hi"}, None),
    ("embed", {}, None),
])
def test_empty_requests_load_or_unload(kind, body, action):
    assert lifecycle_action(kind, body) == action


@pytest.mark.parametrize("kind, key", [("chat", "message"), ("generate", "response")])
def test_lifecycle_answers_look_like_ollamas(kind, key):
    answer = lifecycle_answer("coder", kind, "unload")
    assert answer["done"] is True and answer["done_reason"] == "unload" and key in answer


def test_think_false_drops_reasoning_from_the_answer():
    t = OllamaTranslator("m", "chat", thinking=False)
    assert t.feed({"choices": [{"delta": {"reasoning": "hmm"}}]}) == []
    [chunk] = t.feed({"choices": [{"delta": {"content": "hi"}}]})
    assert chunk["message"] == {"role": "assistant", "content": "hi"}
    assert "thinking" not in t.whole(Timing(start=0, end=1))["message"]


def test_text_completion_chunks_become_generate_chunks_with_length():
    t = OllamaTranslator("m", "generate")
    [chunk] = t.feed({"choices": [{"index": 0, "text": "abc", "finish_reason": None}]})
    t.feed({"choices": [{"index": 0, "text": "", "finish_reason": "length"}]})
    assert chunk["response"] == "abc" and t.finish(Timing(start=0, end=1))[-1]["done_reason"] == "length"


# --- model descriptions --------------------------------------------------------------------------

V0 = {"id": "q", "type": "llm", "arch": "qwen2", "compatibility_type": "gguf", "quantization": "Q4_K_M",
      "state": "loaded", "max_context_length": 32768, "loaded_context_length": 8192, "capabilities": []}
NATIVE = {"key": "q", "type": "llm", "architecture": "qwen2", "format": "gguf", "params_string": "7B",
          "size_bytes": 123, "quantization": {"name": "Q4_K_M", "bits_per_weight": 4},
          "max_context_length": 32768, "capabilities": {"vision": True, "trained_for_tool_use": True,
                                                        "reasoning": True},
          "loaded_instances": [{"id": "q", "config": {"context_length": 4096}}]}


def test_native_descriptions_are_merged_by_key():
    merged = merge_native({"q": V0}, {"models": [NATIVE, {"key": "only-native"}]})
    assert merged["q"]["native"] == NATIVE and merged["q"]["arch"] == "qwen2"
    assert merged["only-native"] == {"id": "only-native", "native": {"key": "only-native"}}


@pytest.mark.parametrize("lm, caps", [
    (None, ["completion", "tools"]),
    ({**V0, "capabilities": ["tool_use"]}, ["completion", "tools"]),
    ({**V0, "type": "vlm"}, ["completion", "vision"]),
    ({**V0, "native": NATIVE}, ["completion", "tools", "vision", "thinking"]),
    ({**V0, "type": "embeddings"}, ["embedding"]),
    ({"id": "e", "native": {"type": "embedding"}}, ["embedding"]),
])
def test_capabilities_come_from_type_and_capabilities(lm, caps):
    assert model_info.capabilities(lm) == caps


def test_details_prefer_native_parameter_size_and_fall_back_to_native_fields():
    assert model_info.details({**V0, "native": NATIVE})["parameter_size"] == "7B"
    only_native = model_info.details({"id": "q", "native": NATIVE})
    assert (only_native["family"], only_native["format"], only_native["quantization_level"]) == (
        "qwen2", "gguf", "Q4_K_M")


@pytest.mark.parametrize("lm, families", [
    (None, None),
    (V0, ["qwen2"]),
    ({**V0, "type": "vlm"}, ["qwen2", "clip"]),  # as Ollama reports its vision models (Enchanted reads it)
    ({**V0, "native": NATIVE}, ["qwen2", "clip"]),  # vision by the native capabilities
    ({"id": "v", "type": "vlm"}, ["clip"]),
])
def test_a_vision_models_families_include_clip(lm, families):
    assert model_info.details(lm)["families"] == families


@pytest.mark.parametrize("lm, length", [
    (V0, 8192),
    ({"id": "q", "native": NATIVE}, 4096),
    ({"id": "q", "max_context_length": 2048}, 2048),
    (None, model_info.DEFAULT_CONTEXT),
])
def test_context_length_is_the_loaded_one_when_loaded(lm, length):
    assert model_info.context_length(lm) == length


def test_ps_lists_aliases_and_models_that_are_loaded_with_an_expiry():
    table = load_routes(io.StringIO("defaults: {ttl: 10m}\naliases:\n  a: {model: q, ttl: 60}\n  b: other\n"))
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    lm_models = {"q": {**V0, "native": NATIVE}, "other": {**V0, "id": "other", "state": "not-loaded"}}
    entries = model_info.running(table, lm_models, now)["models"]
    assert [e["model"] for e in entries] == ["a:latest", "q:latest"]
    assert datetime.fromisoformat(entries[0]["expires_at"]) == datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
    assert datetime.fromisoformat(entries[1]["expires_at"]).minute == 10
    # the context of the instance that serves the alias (/api/v1's config), not /api/v0's summary
    assert entries[0]["size_vram"] == 123 and entries[0]["context_length"] == 4096
    assert model_info.running(RouteTable(), {}, now) == {"models": []}


# --- an LM Studio without /api/v1 ----------------------------------------------------------------

@pytest.mark.parametrize("status, body", [
    (404, {"error": "Not Found"}),
    (200, {"error": "Unexpected endpoint or method. (GET /api/v1/models)"}),
])
def test_a_missing_endpoint_is_recognised(status, body):
    response = httpx.Response(status, json=body, request=httpx.Request("GET", "http://x/api/v1/models"))
    with pytest.raises(EndpointMissing):
        check_response(response)


def run(coro):
    """Run a coroutine on its own loop in a thread (the browser tests keep a loop running in this one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


@pytest.mark.parametrize("status, body", [
    (404, {"error": "Not Found"}),
    (200, {"error": "Unexpected endpoint or method. (GET /api/v1/models)"}),
])
def test_unload_without_api_v1_is_an_honest_error(upstream_mock, status, body):
    from routing.lmstudio import loading
    from routing.proxy.state import current

    upstream_mock.get("/api/v1/models").mock(return_value=httpx.Response(status, json=body))
    state = current()
    with pytest.raises(NotSupported) as info:
        run(loading.unload(state.pool.default, "qwen", state.loader))
    assert "lms unload qwen" in info.value.message and info.value.status == 501


def test_unload_unloads_every_loaded_instance(upstream_mock):
    from routing.lmstudio import loading
    from routing.proxy.state import current

    state = current()
    upstream_mock.get("/api/v1/models").mock(return_value=httpx.Response(200, json={"models": [
        {"key": "qwen", "loaded_instances": [{"id": "qwen"}, {"id": "qwen:2"}]}, {"key": "other"}]}))
    unload = upstream_mock.post("/api/v1/models/unload").mock(return_value=httpx.Response(200, json={}))
    assert run(loading.unload(state.pool.default, "qwen", state.loader)) == ["qwen", "qwen:2"]
    assert [call.request.content for call in unload.calls] == [b'{"instance_id":"qwen"}',
                                                                b'{"instance_id":"qwen:2"}']


@pytest.mark.parametrize("tools, result", [
    ([{"function": {"name": "f"}}], [{"function": {"name": "f"}, "type": "function"}]),
    ([{"type": "function", "function": {"name": "f", "parameters": {}}}],
     [{"type": "function", "function": {"name": "f", "parameters": {}}}]),
])
def test_ollama_tools_become_openai_function_tools(tools, result):
    assert openai_tools(tools) == result


@pytest.mark.parametrize("tools, message", [
    ("f", "tools must be a list"),
    ([{"function": {}}], "tools[0].function.name is required"),
    (["f"], "tools[0].function.name is required"),
])
def test_bad_tools_are_named(tools, message):
    with pytest.raises(BadRequest) as info:
        openai_tools(tools)
    assert message in info.value.message


def test_a_stream_options_that_is_not_an_object_is_a_bad_request():
    from routing.dialects.openai_chat import check_chat

    with pytest.raises(BadRequest, match="stream_options must be an object"):
        check_chat({"messages": [{"role": "user", "content": "x"}], "stream": True, "stream_options": "x"})


@pytest.mark.parametrize("native, has_native", [
    (httpx.Response(200, json={"models": [NATIVE]}), True),
    (httpx.Response(200, json={"error": "Unexpected endpoint or method. (GET /api/v1/models)"}), False),
    (httpx.Response(500, json={"error": {"message": "boom"}}), False),
])
def test_the_catalog_adds_native_descriptions_when_lmstudio_has_them(upstream_mock, native, has_native):
    from routing.proxy.state import current

    upstream_mock.get("/api/v0/models").mock(return_value=httpx.Response(200, json={"data": [V0]}))
    upstream_mock.get("/api/v1/models").mock(return_value=native)
    models = run(current().pool.default.catalog.models())
    assert list(models) == ["q"] and ("native" in models["q"]) == has_native


@pytest.mark.parametrize("extra, max_tokens", [
    ({"max_completion_tokens": 50}, 50),
    ({"max_completion_tokens": 50, "max_tokens": 20}, 20),
    ({}, None),
])
def test_max_completion_tokens_is_also_sent_as_max_tokens(extra, max_tokens):
    from routing.dialects.openai_chat import check_chat

    assert check_chat({"messages": [{"role": "user", "content": "x"}], **extra}).get("max_tokens") == max_tokens
