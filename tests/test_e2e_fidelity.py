"""End to end, feature by feature: the official `ollama` client -> the proxy under Daphne -> the fake
LM Studio. Each test asserts what reached LM Studio as well as what came back."""
import base64
from datetime import datetime

import httpx
import ollama
import orjson
import pytest

from tests.conftest import start_proxy, stop

pytestmark = pytest.mark.e2e

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 24
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris?"}]


def sent(fake, path="/v1/chat/completions"):
    return [r["json"] for r in fake.requests(path)]


@pytest.fixture(scope="module")
def fresh_proxy(fake_lmstudio, tmp_path_factory):
    """A proxy that asks LM Studio for its model list on every request (MODEL_LIST_TTL=0), for tests
    that load and unload models and must not see another test's cached states."""
    server = start_proxy(tmp_path_factory.mktemp("fresh"), fake_lmstudio.url, MODEL_LIST_TTL=0)
    yield server
    stop(server.proc)


@pytest.fixture
def fresh_client(fresh_proxy):
    return ollama.Client(host=fresh_proxy.url, timeout=30)


# --- tools ---------------------------------------------------------------------------------------

def test_tool_calls_arrive_whole_with_object_arguments_not_streamed(ollama_client, fake):
    reply = ollama_client.chat(model="coder", messages=ASK_WEATHER, tools=[WEATHER_TOOL], stream=False)
    [call] = reply.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}
    [upstream] = sent(fake)
    assert upstream["tools"] == [WEATHER_TOOL] and upstream["model"] == "qwen2.5-7b-instruct"


def test_streamed_tool_calls_arrive_in_one_chunk_with_object_arguments(ollama_client, fake):
    chunks = list(ollama_client.chat(model="coder", messages=ASK_WEATHER, tools=[WEATHER_TOOL], stream=True))
    with_calls = [c for c in chunks if c.message.tool_calls]
    assert len(with_calls) == 1
    assert with_calls[0].message.tool_calls[0].function.arguments == {"city": "Paris"}
    assert chunks[-1].done and chunks[-1].done_reason == "stop"
    assert sent(fake)[0]["stream"] is True


def test_a_tool_result_round_trip_matches_ids_and_sends_string_arguments(ollama_client, fake):
    first = ollama_client.chat(model="coder", messages=ASK_WEATHER, tools=[WEATHER_TOOL], stream=False)
    messages = ASK_WEATHER + [first.message,
                              {"role": "tool", "tool_name": "get_weather", "content": "sunny, 21°C"}]
    reply = ollama_client.chat(model="coder", messages=messages, tools=[WEATHER_TOOL], stream=False)
    assert reply.message.content == "The tool said: sunny, 21°C"
    upstream = sent(fake)[1]["messages"]
    assistant, tool = upstream[-2], upstream[-1]
    [call] = assistant["tool_calls"]
    assert isinstance(call["function"]["arguments"], str)
    assert orjson.loads(call["function"]["arguments"]) == {"city": "Paris"}
    assert tool == {"role": "tool", "content": "sunny, 21°C", "tool_call_id": call["id"]}


# --- images, format, think -----------------------------------------------------------------------

def test_chat_images_reach_lmstudio_as_png_data_urls(ollama_client, fake):
    reply = ollama_client.chat(model="vision", stream=False,
                               messages=[{"role": "user", "content": "What is this?", "images": [PNG]}])
    assert reply.message.content.endswith("You said: What is this?")
    content = sent(fake)[0]["messages"][-1]["content"]
    assert content[0] == {"type": "text", "text": "What is this?"}
    assert content[1]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()


def test_generate_images_reach_lmstudio_as_data_urls(ollama_client, fake):
    ollama_client.generate(model="vision", prompt="Describe", images=[PNG], stream=False)
    content = sent(fake)[0]["messages"][-1]["content"]
    assert content[1]["image_url"]["url"].startswith("data:image/png;base64,")


@pytest.mark.parametrize("fmt, schema", [
    ("json", {"type": "object"}),
    ({"type": "object", "properties": {"n": {"type": "integer"}}}, {"type": "object", "properties": {"n": {"type": "integer"}}}),
])
def test_format_becomes_response_format(ollama_client, fake, fmt, schema):
    ollama_client.chat(model="coder", messages=[{"role": "user", "content": "x"}], format=fmt, stream=False)
    ollama_client.generate(model="coder", prompt="x", format=fmt, stream=False)
    for body in sent(fake):
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["schema"] == schema


def test_upstream_reasoning_becomes_thinking_streamed_and_not(ollama_client, fake):
    reply = ollama_client.chat(model="thinker", messages=[{"role": "user", "content": "x"}], stream=False)
    assert reply.message.thinking == "Let me think." and reply.message.content.startswith("Hello")
    chunks = list(ollama_client.generate(model="thinker", prompt="x", stream=True))
    assert "".join(c.thinking or "" for c in chunks) == "Let me think."


def test_think_false_returns_no_thinking(ollama_client, fake):
    reply = ollama_client.chat(model="thinker", messages=[{"role": "user", "content": "x"}], think=False,
                               stream=False)
    assert not reply.message.thinking and reply.message.content.startswith("Hello")
    chunks = list(ollama_client.chat(model="thinker", messages=[{"role": "user", "content": "x"}],
                                     think=False, stream=True))
    assert not any(c.message.thinking for c in chunks)
    assert "reasoning_effort" not in sent(fake)[0]


def test_think_levels_become_reasoning_effort(ollama_client, fake):
    ollama_client.chat(model="thinker", messages=[{"role": "user", "content": "x"}], think="high", stream=False)
    assert sent(fake)[0]["reasoning_effort"] == "high"


# --- generate ------------------------------------------------------------------------------------

def test_generate_system_goes_before_the_prompt(ollama_client, fake):
    ollama_client.generate(model="tiny", prompt="Why?", system="Be kind.", stream=False)
    assert sent(fake)[0]["messages"] == [{"role": "system", "content": "Be kind."},
                                         {"role": "user", "content": "Why?"}]


def test_raw_generate_sends_the_prompt_as_is_to_text_completions(ollama_client, fake):
    whole = ollama_client.generate(model="coder", prompt="<|im_start|>user\nhi", raw=True, stream=False)
    assert whole.response == "Completion for: <|im_start|>user\nhi" and whole.done
    parts = list(ollama_client.generate(model="coder", prompt="abc", raw=True, stream=True))
    assert "".join(p.response for p in parts) == "Completion for: abc"
    first, second = sent(fake, "/v1/completions")
    assert first["prompt"] == "<|im_start|>user\nhi" and "messages" not in first
    assert first["model"] == "qwen2.5-7b-instruct" and second["prompt"] == "abc"
    assert sent(fake) == []


@pytest.mark.parametrize("raw", [False, True])
def test_generate_reports_length_when_lmstudio_stopped_for_length(ollama_client, fake, raw):
    whole = ollama_client.generate(model="tiny", prompt="a b c", raw=raw, options={"num_predict": 2},
                                   stream=False)
    assert whole.done_reason == "length"
    last = list(ollama_client.generate(model="tiny", prompt="a b c", raw=raw, options={"num_predict": 2},
                                       stream=True))[-1]
    assert last.done_reason == "length"
    path = "/v1/completions" if raw else "/v1/chat/completions"
    assert [b["max_tokens"] for b in sent(fake, path)] == [2, 2]


def test_generate_with_a_suffix_says_insert_is_not_supported(ollama_client, fake):
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.generate(model="coder", prompt="def f(", suffix="    return x", stream=False)
    assert info.value.status_code == 400 and "insert" in info.value.error
    assert sent(fake) == []


# --- keep_alive: load and unload -----------------------------------------------------------------

def test_an_empty_chat_loads_the_model_with_its_ttl(fresh_client, fake):
    reply = fresh_client.chat(model="tiny", messages=[])
    assert reply.done and reply.done_reason == "load" and reply.message.role == "assistant"
    [load] = sent(fake)
    assert load["model"] == "llama-3.2-1b-instruct" and load["max_tokens"] == 1 and load["ttl"] == 600
    assert "tiny:latest" in [m.model for m in fresh_client.ps().models]


def test_loading_a_loaded_model_sends_nothing(fresh_client, fake):
    assert fresh_client.generate(model="coder", prompt="", keep_alive="1h").done_reason == "load"
    assert sent(fake) == [] and sent(fake, "/v1/completions") == []


def test_an_empty_embed_model_load_uses_an_embeddings_request(fresh_client, fake):
    assert fresh_client.generate(model="embedder", prompt="").done_reason == "load"
    [load] = sent(fake, "/v1/embeddings")
    assert load["model"] == "text-embedding-nomic-embed-text-v1.5" and load["input"] == ""


def test_an_empty_generate_with_keep_alive_0_unloads_through_api_v1(fresh_client, fake):
    reply = fresh_client.generate(model="coder", prompt="", keep_alive=0)
    assert reply.done and reply.done_reason == "unload"
    [unload] = sent(fake, "/api/v1/models/unload")
    assert unload == {"instance_id": "qwen2.5-7b-instruct"}
    assert "coder:latest" not in [m.model for m in fresh_client.ps().models]
    assert fresh_client.chat(model="coder", messages=[], keep_alive=0).done_reason == "unload"
    assert len(sent(fake, "/api/v1/models/unload")) == 1  # nothing left to unload


def test_load_and_unload_of_an_unknown_model_are_404s(fresh_client, fake):
    for keep_alive in (None, 0):
        with pytest.raises(ollama.ResponseError) as info:
            fresh_client.chat(model="nope", messages=[], keep_alive=keep_alive)
        assert info.value.status_code == 404


# --- model endpoints -----------------------------------------------------------------------------

def test_ps_lists_loaded_models_with_expiry_vram_and_context(fresh_client, fresh_proxy, fake):
    models = {m.model: m for m in fresh_client.ps().models}
    coder = models["coder:latest"]
    assert coder.context_length == 8192 and coder.size_vram == 4_683_073_952 == coder.size
    assert coder.expires_at.tzinfo is not None and coder.details.family == "qwen2"
    assert "qwen2.5-7b-instruct:latest" in models and "tiny:latest" not in models
    for entry in httpx.get(f"{fresh_proxy.url}/api/ps").json()["models"]:
        datetime.fromisoformat(entry["expires_at"])


def test_show_reports_details_parameters_and_capabilities(ollama_client, fake):
    coder = ollama_client.show("coder")
    assert (coder.details.format, coder.details.family, coder.details.quantization_level,
            coder.details.parameter_size) == ("gguf", "qwen2", "Q4_K_M", "7B")
    assert coder.parameters.splitlines() == ["num_ctx 8192", 'num_ctx_policy "ignored"', "temperature 0.2",
                                             "top_p 0.9"]
    assert coder.capabilities == ["completion", "tools"]
    assert ollama_client.show("vision").capabilities == ["completion", "vision"]
    assert ollama_client.show("thinker").capabilities == ["completion", "tools", "thinking"]
    assert ollama_client.show("thinker").details.format == "mlx"
    assert ollama_client.show("embedder").capabilities == ["embedding"]


def test_tags_report_sizes_and_details(ollama_client, fake):
    coder = next(m for m in ollama_client.list().models if m.model == "coder:latest")
    assert coder.size == 4_683_073_952 and coder.details.parameter_size == "7B"
    assert coder.details.format == "gguf" and coder.modified_at is not None


def test_embed_batches_through_an_alias_with_its_ttl(ollama_client, fake):
    result = ollama_client.embed(model="embedder", input=["first text", "second"])
    assert len(result.embeddings) == 2 and all(len(v) == 8 for v in result.embeddings)
    assert result.embeddings[0] != result.embeddings[1] and result.prompt_eval_count == 3
    [upstream] = sent(fake, "/v1/embeddings")
    assert upstream == {"model": "text-embedding-nomic-embed-text-v1.5", "input": ["first text", "second"],
                        "ttl": 600}


def test_embed_dimensions_shorten_the_vectors(ollama_client, fake):
    [vector] = ollama_client.embed(model="embedder", input="x", dimensions=4).embeddings
    assert len(vector) == 4 and abs(sum(v * v for v in vector) - 1) < 1e-6


def test_legacy_embeddings_return_one_vector(ollama_client, fake):
    assert len(ollama_client.embeddings(model="embedder", prompt="hello").embedding) == 8
    assert sent(fake, "/v1/embeddings")[0]["input"] == "hello"


@pytest.mark.parametrize("call", [
    lambda c: c.show("nope"),
    lambda c: c.embed(model="nope", input="x"),
    lambda c: c.embeddings(model="nope", prompt="x"),
    lambda c: list(c.generate(model="nope", prompt="x", stream=True)),
    lambda c: c.generate(model="nope", prompt="x", stream=False),
    lambda c: list(c.chat(model="nope", messages=[{"role": "user", "content": "x"}], stream=True)),
])
def test_an_unknown_model_is_a_404_on_every_model_endpoint(ollama_client, fake, call):
    with pytest.raises(ollama.ResponseError) as info:
        call(ollama_client)
    assert info.value.status_code == 404 and info.value.error == "model 'nope' not found"


def test_pull_of_a_served_model_succeeds_and_of_an_unknown_one_says_why_not(ollama_client, fake):
    assert ollama_client.pull("coder").status == "success"  # downloads: tests/test_e2e_pull.py
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.pull("llama3:70b")
    assert info.value.status_code == 404 and "cannot pull 'llama3:70b'" in info.value.error


def test_push_answers_with_a_clear_error(ollama_client):
    with pytest.raises(ollama.ResponseError) as info:
        ollama_client.push("coder")
    assert info.value.status_code == 501 and "pushing models is not supported" in info.value.error


def test_blobs_are_absent_and_cannot_be_uploaded(proxy_server):
    url = f"{proxy_server.url}/api/blobs/sha256:{'0' * 64}"
    assert httpx.head(url).status_code == 404
    r = httpx.post(url, content=b"data")
    assert r.status_code == 501 and "not supported" in r.json()["error"]


@pytest.mark.parametrize("path, body, message", [
    ("/api/embed", {"model": "embedder"}, "input is required"),
    ("/api/embed", {"model": "embedder", "input": 5}, "input must be a string or a list of strings"),
    ("/api/embed", {"model": "embedder", "input": "x", "dimensions": "4"}, "dimensions must be"),
    ("/api/embeddings", {"model": "embedder", "prompt": ["x"]}, "prompt must be a string"),
    ("/api/chat", {"model": "coder", "messages": [{"role": "user", "content": "x"}], "think": "maximum"},
     "think must be"),
    ("/api/generate", {"model": "coder", "prompt": 5}, "prompt must be a string"),
    ("/api/generate", {"model": "coder", "prompt": "x", "raw": "yes"}, "raw must be true or false"),
    ("/api/generate", {"model": "coder", "prompt": "x", "keep_alive": "soon"}, "keep_alive"),
    ("/api/show", {}, "model is required"),
    ("/api/pull", {"model": 3}, "model must be a non-empty string"),
])
def test_bad_fields_are_400s_naming_the_field(proxy_server, fake, path, body, message):
    r = httpx.post(f"{proxy_server.url}{path}", json=body)
    assert r.status_code == 400 and message in r.json()["error"]


def test_with_jit_loading_off_an_empty_chat_loads_through_api_v1(fresh_client, fake):
    fake.script(jit=False)
    assert fresh_client.chat(model="tiny", messages=[]).done_reason == "load"
    assert len(sent(fake)) == 1  # the minimal request, refused
    assert sent(fake, "/api/v1/models/load") == [{"model": "llama-3.2-1b-instruct"}]
    assert "tiny:latest" in [m.model for m in fresh_client.ps().models]
