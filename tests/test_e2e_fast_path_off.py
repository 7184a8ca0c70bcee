"""The stock path end to end: the proxy under Daphne with FAST_PATH=false (no Twisted gate, no
write-through, Django's own handler and full MIDDLEWARE on the API paths, aiohttp's own reads) still
streams every dialect with the official SDKs and still refuses foreign hosts, wrong keys and bodies over
the limit, in the dialect's shape, once Daphne has read the body. (docs/internals.md)"""
from __future__ import annotations

import anthropic
import httpx
import ollama
import openai
import orjson
import pytest

from tests.conftest import start_proxy, stop

pytestmark = pytest.mark.e2e

KEY = "stock-path-key-0123456789"
LIMIT = 64 * 1024
AUTH = {"Authorization": f"Bearer {KEY}"}
CHAT = {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def stock(fake_lmstudio, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stock")
    server = start_proxy(tmp, fake_lmstudio.url, FAST_PATH="false", API_KEY=KEY, MAX_REQUEST_BYTES=LIMIT)
    server.log = tmp / "server.log"
    yield server
    stop(server.proc)


def test_the_log_says_the_fast_path_is_off(stock):
    log = stock.log.read_text()
    assert "INFO routing.server: FAST_PATH is off: the server runs on stock Daphne and Django behaviour" in log
    assert "WARNING" not in log


def test_the_api_is_served_by_djangos_stock_handler_and_full_middleware(stock):
    response = httpx.get(f"{stock.url}/api/version")
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"  # XFrameOptionsMiddleware: not in API_MIDDLEWARE


# --- a streamed chat in each dialect ---------------------------------------------------------------

def test_a_streamed_ollama_chat(stock, fake):
    client = ollama.Client(host=stock.url, headers=AUTH, timeout=30)
    chunks = list(client.chat(model="coder", stream=True, messages=[{"role": "user", "content": "one"}]))
    assert "".join(c.message.content for c in chunks) == "Hello from qwen2.5-7b-instruct! You said: one"
    assert chunks[-1].done and len(chunks) > 3


def test_a_streamed_openai_chat(stock, fake):
    client = openai.OpenAI(base_url=f"{stock.url}/v1", api_key=KEY, timeout=30, max_retries=0)
    stream = client.chat.completions.create(model="coder", stream=True,
                                            messages=[{"role": "user", "content": "two"}])
    text = "".join(choice.delta.content or "" for chunk in stream for choice in chunk.choices)
    assert text == "Hello from qwen2.5-7b-instruct! You said: two"


def test_a_streamed_openai_response(stock, fake):
    client = openai.OpenAI(base_url=f"{stock.url}/v1", api_key=KEY, timeout=30, max_retries=0)
    events = list(client.responses.create(model="coder", input="three", stream=True))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "Hello from qwen2.5-7b-instruct! You said: three"


def test_a_streamed_anthropic_message(stock, fake):
    client = anthropic.Anthropic(base_url=stock.url, api_key=KEY, timeout=30, max_retries=0)
    with client.messages.stream(model="coder", max_tokens=100,
                                messages=[{"role": "user", "content": "four"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from qwen2.5-7b-instruct! You said: four" and final.stop_reason == "end_turn"


# --- the same refusals, after the body -------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/tags", "/v1/models", "/admin/login/"])
def test_a_foreign_host_is_refused(stock, path):
    response = httpx.get(stock.url + path, headers={"Host": "evil.example", **AUTH})
    assert response.status_code == 400 and "host not allowed" in response.text


def message_of(path: str, body: dict) -> str:
    if path == "/v1/messages":
        assert body["type"] == "error"
        return body["error"]["message"]
    return body["error"]["message"] if path.startswith("/v1/") else body["error"]


@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions", "/v1/messages"])
def test_a_wrong_key_is_a_401_in_the_dialects_shape(stock, fake, path):
    response = httpx.post(stock.url + path, json=CHAT, headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401 and response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert "API key" in message_of(path, response.json())
    assert fake.requests("/v1/chat/completions") == []


def test_the_sdks_see_a_wrong_key_as_an_authentication_error(stock, fake):
    with pytest.raises(openai.AuthenticationError) as info:
        openai.OpenAI(base_url=f"{stock.url}/v1", api_key="wrong", max_retries=0).chat.completions.create(
            model="coder", messages=[{"role": "user", "content": "x"}])
    assert info.value.code == "invalid_api_key"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(base_url=stock.url, api_key="wrong", max_retries=0).messages.create(
            model="coder", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    with pytest.raises(ollama.ResponseError) as ollama_info:
        ollama.Client(host=stock.url).chat(model="coder", messages=[{"role": "user", "content": "x"}])
    assert ollama_info.value.status_code == 401


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
@pytest.mark.parametrize("path", ["/api/chat", "/v1/chat/completions", "/v1/messages"])
def test_a_body_over_the_limit_is_a_413_in_the_dialects_shape(stock, fake, path, chunked):
    raw = orjson.dumps({**CHAT, "max_tokens": 10, "messages": [{"role": "user", "content": "x" * LIMIT}]})
    content = iter([raw[i:i + 8192] for i in range(0, len(raw), 8192)]) if chunked else raw
    response = httpx.post(stock.url + path, content=content, timeout=30,
                          headers={"Content-Type": "application/json", **AUTH})
    assert response.status_code == 413, response.text[:200]
    assert "too large" in message_of(path, response.json())
    assert fake.requests("/v1/chat/completions") == []
