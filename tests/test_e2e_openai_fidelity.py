"""End to end: the official `openai` client on /v1 -> the proxy under Daphne -> the fake LM Studio."""
import httpx
import openai
import orjson
import pytest

from tests.conftest import start_proxy, stop

pytestmark = pytest.mark.e2e

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}


def sent(fake, path):
    return [r["json"] for r in fake.requests(path)]


def test_models_list_and_retrieve(openai_client, fake):
    ids = [m.id for m in openai_client.models.list().data]
    assert ids[:2] == ["coder", "tiny"] and "qwen2.5-7b-instruct" in ids
    assert openai_client.models.retrieve("coder").id == "coder"
    assert openai_client.models.retrieve("qwen2.5-7b-instruct").object == "model"


def test_a_model_id_with_slashes_can_be_retrieved(fake_lmstudio, tmp_path):
    fake_lmstudio.reset()
    httpx.post(f"{fake_lmstudio.url}/_fake/models", json=[{"id": "lmstudio-community/qwen3-8b"}])
    server = start_proxy(tmp_path, fake_lmstudio.url, MODEL_LIST_TTL=0)
    try:
        client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
        assert client.models.retrieve("lmstudio-community/qwen3-8b").id == "lmstudio-community/qwen3-8b"
        with pytest.raises(openai.NotFoundError):
            client.models.retrieve("lmstudio-community/other")
    finally:
        stop(server.proc)
        fake_lmstudio.reset()


def test_streamed_chat_with_tools_passes_fragments_through(openai_client, fake):
    stream = openai_client.chat.completions.create(
        model="coder", stream=True, tools=[WEATHER_TOOL],
        messages=[{"role": "user", "content": "weather in Paris?"}])
    pieces, finish = [], None
    for chunk in stream:
        assert chunk.model == "coder"
        for choice in chunk.choices:
            pieces += [tc.function.arguments or "" for tc in choice.delta.tool_calls or ()]
            finish = choice.finish_reason or finish
    assert orjson.loads("".join(pieces)) == {"city": "Paris"} and finish == "tool_calls"
    [upstream] = sent(fake, "/v1/chat/completions")
    assert upstream["tools"] == [WEATHER_TOOL] and upstream["model"] == "qwen2.5-7b-instruct"
    assert upstream["temperature"] == 0.2 and upstream["ttl"] == 1800  # the alias's overrides


def test_embeddings_resolve_aliases_and_apply_the_ttl(openai_client, fake):
    result = openai_client.embeddings.create(model="embedder", input=["one", "two"], encoding_format="float")
    assert result.model == "embedder" and [len(d.embedding) for d in result.data] == [8, 8]
    [upstream] = sent(fake, "/v1/embeddings")
    assert upstream["model"] == "text-embedding-nomic-embed-text-v1.5" and upstream["ttl"] == 600
    assert upstream["input"] == ["one", "two"] and "temperature" not in upstream


@pytest.mark.parametrize("call", [
    lambda c: c.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}]),
    lambda c: list(c.chat.completions.create(model="nope", stream=True,
                                             messages=[{"role": "user", "content": "x"}])),
    lambda c: c.completions.create(model="nope", prompt="x"),
    lambda c: c.embeddings.create(model="nope", input="x"),
    lambda c: c.models.retrieve("nope"),
])
def test_an_unknown_model_is_a_404_model_not_found(openai_client, fake, call):
    with pytest.raises(openai.NotFoundError) as info:
        call(openai_client)
    assert info.value.code == "model_not_found" and "model 'nope' not found" in info.value.message


@pytest.mark.parametrize("body, message", [
    (b"{oops", "invalid JSON"),
    (b'{"model": "embedder"}', "input is required"),
    (b'{"model": "embedder", "input": [1, 2]}', "input must be a string or a list of strings"),
])
def test_bad_embeddings_requests_are_openai_shaped_400s(proxy_server, body, message):
    r = httpx.post(f"{proxy_server.url}/v1/embeddings", content=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert message in error["message"] and error["type"] == "invalid_request_error"


def test_max_completion_tokens_limits_the_answer(openai_client, fake):
    reply = openai_client.chat.completions.create(model="tiny", max_completion_tokens=2,
                                                  messages=[{"role": "user", "content": "a b c"}])
    assert reply.choices[0].finish_reason == "length" and reply.model == "tiny"
    assert sent(fake, "/v1/chat/completions")[0]["max_tokens"] == 2


def test_lmstudio_errors_pass_through_with_their_message_in_both_dialects(openai_client, ollama_client, fake):
    import ollama

    fake.script(status=503, error="the model crashed")
    with pytest.raises(openai.APIStatusError) as info:
        openai_client.chat.completions.create(model="coder", stream=True,
                                              messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 503 and "the model crashed" in info.value.message
    with pytest.raises(ollama.ResponseError) as failed:
        list(ollama_client.generate(model="coder", prompt="x", stream=True))
    assert failed.value.status_code == 503 and failed.value.error == "LM Studio: the model crashed"
