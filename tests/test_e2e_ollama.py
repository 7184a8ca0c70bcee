"""End to end: the official `ollama` client -> the proxy under Daphne -> the fake LM Studio process."""
import httpx
import ollama
import pytest

pytestmark = pytest.mark.e2e


def chat_requests(fake):
    return [r["json"] for r in fake.requests("/v1/chat/completions")]


def test_root_and_version_answer_like_ollama(proxy_server):
    assert httpx.get(proxy_server.url).text == "Ollama is running"
    assert httpx.head(proxy_server.url).status_code == 200
    version = httpx.get(f"{proxy_server.url}/api/version").json()["version"]
    assert tuple(map(int, version.split("."))) >= (0, 6, 4)


def test_list_shows_aliases_and_lmstudio_models(ollama_client, fake):
    names = [m.model for m in ollama_client.list().models]
    assert names[:2] == ["coder:latest", "tiny:latest"]
    assert "qwen2.5-7b-instruct:latest" in names  # passthrough: LM Studio's own ids too
    coder = ollama_client.list().models[0]
    assert coder.details.family == "qwen2" and coder.details.quantization_level == "Q4_K_M"


def test_show_gives_copilot_capabilities_and_context_length(ollama_client, fake):
    shown = ollama_client.show("coder")
    assert "tools" in shown.capabilities and "completion" in shown.capabilities
    assert shown.modelinfo["general.architecture"] == "qwen2"
    assert shown.modelinfo["qwen2.context_length"] == 8192
    assert "num_ctx 8192" in shown.parameters


def test_chat_through_an_alias_applies_model_temperature_system_and_ttl(ollama_client, fake):
    reply = ollama_client.chat(model="coder", messages=[{"role": "user", "content": "hi"}],
                               options={"temperature": 0.9}, stream=False)
    assert reply.message.role == "assistant"
    assert reply.message.content == "Hello from qwen2.5-7b-instruct! You said: hi"
    assert reply.done and reply.done_reason == "stop"
    assert reply.eval_count > 0 and reply.prompt_eval_count > 0 and reply.total_duration > 0
    [sent] = chat_requests(fake)
    assert sent["model"] == "qwen2.5-7b-instruct"
    assert sent["temperature"] == 0.2 and sent["top_p"] == 0.9
    assert sent["messages"][0] == {"role": "system", "content": "You are terse."}
    assert sent["ttl"] == 1800


def test_streamed_chat_arrives_token_by_token_with_role_on_every_chunk(ollama_client, fake):
    chunks = list(ollama_client.chat(model="coder:latest", stream=True,
                                     messages=[{"role": "user", "content": "stream please"}]))
    assert len(chunks) > 3
    assert all(c.message.role == "assistant" for c in chunks)
    assert "".join(c.message.content for c in chunks) == \
        "Hello from qwen2.5-7b-instruct! You said: stream please"
    final = chunks[-1]
    assert final.done and final.eval_count == len(chunks) - 1
    assert [not c.done for c in chunks[:-1]] == [True] * (len(chunks) - 1)


def test_keep_alive_from_the_client_wins_over_the_alias_ttl(ollama_client, fake):
    ollama_client.chat(model="coder", messages=[{"role": "user", "content": "x"}], keep_alive="2m",
                       stream=False)
    assert chat_requests(fake)[0]["ttl"] == 120


def test_defaults_ttl_applies_to_an_alias_without_one(ollama_client, fake):
    ollama_client.chat(model="tiny", messages=[{"role": "user", "content": "x"}], stream=False)
    [sent] = chat_requests(fake)
    assert sent["ttl"] == 600 and sent["model"] == "llama-3.2-1b-instruct"
    assert "temperature" not in sent


def test_generate_streamed_and_not(ollama_client, fake):
    whole = ollama_client.generate(model="coder", prompt="Why?", system="Be kind.", stream=False)
    assert whole.response.endswith("You said: Why?") and whole.done
    parts = list(ollama_client.generate(model="coder", prompt="Why?", stream=True))
    assert "".join(p.response for p in parts) == whole.response and parts[-1].done
    first = chat_requests(fake)[0]
    assert [m["role"] for m in first["messages"]] == ["system", "system", "user"]


def test_an_unknown_model_is_a_404_before_any_stream(ollama_client, fake):
    for stream in (False, True):
        with pytest.raises(ollama.ResponseError) as info:
            result = ollama_client.chat(model="no-such-model", stream=stream,
                                        messages=[{"role": "user", "content": "x"}])
            list(result) if stream else None
        assert info.value.status_code == 404
        assert info.value.error == "model 'no-such-model' not found"


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "invalid JSON"),
    (b'{"messages": []}', 400, "model is required"),
    (b'{"model": "coder", "messages": "hi"}', 400, "messages must be a list"),
])
def test_bad_requests_get_ollama_errors(proxy_server, body, status, message):
    r = httpx.post(f"{proxy_server.url}/api/chat", content=body)
    assert r.status_code == status and message in r.json()["error"]


def test_a_stream_cut_by_lmstudio_ends_with_an_error_line(ollama_client, fake):
    fake.script(cut_after=2)
    with pytest.raises(ollama.ResponseError) as info:
        list(ollama_client.chat(model="coder", stream=True, messages=[{"role": "user", "content": "x"}]))
    assert "LM Studio" in info.value.error


def test_lmstudio_down_is_a_502_with_a_readable_message(tmp_path):
    from tests.conftest import free_port, start_proxy, stop

    server = start_proxy(tmp_path, f"http://127.0.0.1:{free_port()}", UPSTREAM_CONNECT_TIMEOUT=2)
    try:
        r = httpx.post(f"{server.url}/api/chat", json={"model": "coder", "messages": []}, timeout=10)
        assert r.status_code == 502 and "cannot reach LM Studio" in r.json()["error"]
    finally:
        stop(server.proc)


def test_the_lean_api_handler_still_checks_allowed_hosts(proxy_server):
    r = httpx.get(f"{proxy_server.url}/api/tags", headers={"Host": "rebound.example"})
    assert r.status_code == 400 and "host not allowed" in r.json()["error"]
