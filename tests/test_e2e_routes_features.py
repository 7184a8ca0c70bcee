"""End to end: pattern aliases, the fallback alias, visibility and declared endpoints, through the
official `ollama` and `openai` clients."""
import httpx
import ollama
import openai
import pytest

from tests.conftest import start_proxy, stop

pytestmark = pytest.mark.e2e

ROUTES = """
defaults:
  passthrough: false
  fallback: coder
  expose: aliases
aliases:
  coder: {model: qwen2.5-7b-instruct, temperature: 0.3}
  "gpt-4*": {model: llama-3.2-1b-instruct, temperature: 0.1}
  "llama3*": qwen3-4b-thinking
  internal: {model: qwen2-vl-2b-instruct, hidden: true}
endpoints:
  - {method: GET, path: /api/experimental/capabilities, json: {features: [chat]}}
  - {method: POST, path: /props, status: 200, json: {default_generation_settings: {n_ctx: 8192}}}
"""


@pytest.fixture(scope="module")
def server(fake_lmstudio, tmp_path_factory):
    proxy = start_proxy(tmp_path_factory.mktemp("patterns"), fake_lmstudio.url, routes=ROUTES)
    yield proxy
    stop(proxy.proc)


def sent_models(fake):
    return [r["json"]["model"] for r in fake.requests("/v1/chat/completions")]


def test_a_hard_coded_name_is_served_by_a_pattern_alias(server, fake):
    client = ollama.Client(host=server.url)
    reply = client.chat(model="llama3:8b", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert reply.model == "llama3:8b" and "qwen3-4b-thinking" in reply.message.content
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    oa.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert sent_models(fake) == ["qwen3-4b-thinking", "llama-3.2-1b-instruct"]
    assert fake.requests("/v1/chat/completions")[1]["json"]["temperature"] == 0.1


def test_an_unknown_name_is_served_by_the_fallback(server, fake):
    client = ollama.Client(host=server.url)
    parts = list(client.chat(model="codellama:7b", messages=[{"role": "user", "content": "hi"}],
                             stream=True))
    assert "qwen2.5-7b-instruct" in "".join(p.message.content for p in parts)
    [sent] = fake.requests("/v1/chat/completions")
    assert sent["json"]["model"] == "qwen2.5-7b-instruct" and sent["json"]["temperature"] == 0.3


def test_model_lists_show_only_the_curated_aliases(server, fake):
    names = [m.model for m in ollama.Client(host=server.url).list().models]
    assert names == ["coder:latest"]
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0)
    assert [m.id for m in oa.models.list()] == ["coder"]


def test_hidden_aliases_still_answer(server, fake):
    ollama.Client(host=server.url).chat(model="internal", messages=[{"role": "user", "content": "x"}],
                                        stream=False)
    assert sent_models(fake) == ["qwen2-vl-2b-instruct"]


def test_declared_endpoints_answer_as_declared_and_others_are_json_404s(server):
    r = httpx.get(f"{server.url}/api/experimental/capabilities")
    assert (r.status_code, r.json()) == (200, {"features": ["chat"]})
    assert httpx.post(f"{server.url}/props").json()["default_generation_settings"]["n_ctx"] == 8192
    missing = httpx.get(f"{server.url}/api/nothing-here")
    assert missing.status_code == 404 and missing.json() == {"error": "404 page not found"}
