"""End to end: aliases with load settings are served by an LM Studio instance loaded with them, through
the official `ollama` and `openai` clients, the fake LM Studio recording every load."""
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import ollama
import openai
import pytest

from tests.conftest import admin_login, make_superuser, start_proxy, stop
from tests.test_e2e_history import find_log

pytestmark = pytest.mark.e2e

MODEL = "llama-3.2-1b-instruct"  # 131072 tokens at most
ROUTES = f"""
defaults:
  ttl: 10m
aliases:
  coder: {{model: {MODEL}, context_length: 65536}}
  small: {{model: {MODEL}, context_length: 8192}}
  elastic: {{model: qwen3-4b-thinking, context_length: 8192, num_ctx_max: 16384}}
  rigid: {{model: qwen2-vl-2b-instruct, context_length: 8192}}
  brief: {{model: qwen2-vl-2b-instruct, context_length: 2048, flash_attention: true, ttl: 1}}
  plain: {MODEL}
"""
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def server(fake_lmstudio, tmp_path_factory):
    # MODEL_LIST_TTL=0: each test resets the fake (unloading everything); no list may outlive that
    proxy = start_proxy(tmp_path_factory.mktemp("load-settings"), fake_lmstudio.url, routes=ROUTES,
                        MODEL_LIST_TTL=0)
    yield proxy
    stop(proxy.proc)


@pytest.fixture
def clients(server):
    return (ollama.Client(host=server.url, timeout=30),
            openai.OpenAI(base_url=f"{server.url}/v1", api_key="x", timeout=30, max_retries=0))


def loads(fake):
    return [r["json"] for r in fake.requests("/api/v1/models/load")]


def chat_models(fake):
    return [r["json"]["model"] for r in fake.requests("/v1/chat/completions")]


def test_twenty_concurrent_first_requests_cause_one_load_with_the_alias_settings(server, fake, clients):
    ollama_client, openai_client = clients
    fake.script(load_delay=0.5)

    def ask(n: int) -> str:  # both clients, streamed and not
        if n % 3 == 0:
            return openai_client.chat.completions.create(model="coder", messages=HI).choices[0].message.content
        if n % 3 == 1:
            return "".join(p.message.content for p in ollama_client.chat(model="coder", messages=HI,
                                                                         stream=True))
        return ollama_client.chat(model="coder", messages=HI, stream=False).message.content

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(ask, range(20)))
    assert all(f"Hello from {MODEL}!" in a for a in answers)
    assert loads(fake) == [{"model": MODEL, "context_length": 65536, "echo_load_config": True}]
    paths = [r["path"] for r in fake.requests()]
    assert paths.index("/api/v1/models/load") < paths.index("/v1/chat/completions")  # loaded before
    assert chat_models(fake) == [MODEL] * 20 and fake.served() == {MODEL: 20}
    # served from then on without another load
    ollama_client.chat(model="coder", messages=HI, stream=False)
    assert len(loads(fake)) == 1


def test_show_and_the_model_list_report_the_context_the_alias_is_served_with(server, fake, clients):
    ollama_client, openai_client = clients
    shown = ollama_client.show("coder")
    assert shown.modelinfo["llama.context_length"] == 65536
    assert "num_ctx 65536" in shown.parameters and 'num_ctx_policy "ignored"' in shown.parameters
    assert 'num_ctx_policy "honoured up to 16384"' in ollama_client.show("elastic").parameters
    listed = {m["id"]: m for m in httpx.get(f"{server.url}/v1/models").json()["data"]}
    assert (listed["coder"]["context_length"], listed["small"]["context_length"]) == (65536, 8192)
    assert listed["plain"]["context_length"] == 131072  # not loaded: LM Studio's maximum
    assert [m.id for m in openai_client.models.list()][:2] == ["coder", "small"]


def test_a_second_alias_on_the_same_model_gets_its_own_instance(server, fake, clients):
    ollama_client, openai_client = clients
    ollama_client.chat(model="coder", messages=HI, stream=False)
    answer = openai_client.chat.completions.create(model="small", messages=HI).choices[0].message.content
    assert f"Hello from {MODEL}:2!" in answer
    assert [load["context_length"] for load in loads(fake)] == [65536, 8192]
    assert chat_models(fake) == [MODEL, f"{MODEL}:2"]
    ollama_client.chat(model="coder", messages=HI, stream=False)  # each keeps its own
    assert chat_models(fake)[-1] == MODEL and len(loads(fake)) == 2
    running = {m["name"]: m for m in httpx.get(f"{server.url}/api/ps").json()["models"]}
    assert (running["coder:latest"]["context_length"], running["small:latest"]["context_length"]) == (
        65536, 8192)
    first, second = running[f"{MODEL}:latest"], running[f"{MODEL}:2"]
    assert (first["context_length"], first["loaded_by"], first["ttl"]) == (65536, "coder", 600)
    assert (second["context_length"], second["loaded_by"], second["instance_id"]) == (8192, "small",
                                                                                     f"{MODEL}:2")
    assert {m.model: m.context_length for m in ollama_client.ps().models}[f"{MODEL}:2"] == 8192


@pytest.mark.parametrize("alias, num_ctx, loaded_with", [
    ("elastic", 12000, 12000),    # honoured
    ("elastic", 100000, 16384),   # up to the alias's maximum
    ("elastic", None, 8192),      # not sent: the alias's own
    ("rigid", 32768, 8192),       # this alias ignores num_ctx
])
def test_num_ctx_is_honoured_or_ignored_per_alias(server, fake, clients, alias, num_ctx, loaded_with):
    ollama_client, _ = clients
    options = {"num_ctx": num_ctx} if num_ctx else None
    ollama_client.chat(model=alias, messages=HI, stream=False, options=options)
    assert [load["context_length"] for load in loads(fake)] == [loaded_with]


def test_a_failed_load_is_a_clear_error_in_each_dialect_and_in_the_history(server, fake, clients):
    ollama_client, openai_client = clients
    fake.script(load_error="insufficient system resources")
    with pytest.raises(ollama.ResponseError) as failed:
        list(ollama_client.chat(model="coder", messages=HI, stream=True))
    assert failed.value.status_code == 502
    assert failed.value.error == (f"LM Studio could not load '{MODEL}' with context_length 65536 for "
                                  f"'coder': insufficient system resources")
    with pytest.raises(openai.APIStatusError) as refused:
        openai_client.chat.completions.create(model="small", messages=HI)
    assert refused.value.status_code == 502 and "could not load" in refused.value.body["message"]
    assert fake.requests("/v1/chat/completions") == []
    request_id = httpx.post(f"{server.url}/api/chat", json={"model": "coder", "messages": HI},
                            timeout=30).headers["X-Request-Id"]
    row = find_log(server, request_id)
    assert row["status"] == 502 and "insufficient system resources" in row["error"]
    assert '"context_length":65536' in row["load"] and row["load_ms"] is not None


def test_a_load_is_recorded_in_the_history_apart_from_the_first_token(server, fake, clients):
    fake.script(load_delay=0.3)
    response = httpx.post(f"{server.url}/api/chat", json={"model": "coder", "messages": HI, "stream": False},
                          timeout=30)
    row = find_log(server, response.headers["X-Request-Id"])
    assert row["load_ms"] >= 300 and row["ttft_ms"] >= row["load_ms"]
    assert '"instance_id":"llama-3.2-1b-instruct"' in row["load"] and '"joined":false' in row["load"]
    again = httpx.post(f"{server.url}/api/chat", json={"model": "coder", "messages": HI, "stream": False},
                       timeout=30)
    assert find_log(server, again.headers["X-Request-Id"])["load"] == ""  # no load: nothing to say


def test_a_warm_up_loads_the_aliases_instance_and_its_ttl_is_kept_by_the_proxy(server, fake, clients):
    ollama_client, _ = clients
    assert ollama_client.generate(model="brief").done_reason == "load"  # `ollama run brief` warm-up
    assert loads(fake) == [{"model": "qwen2-vl-2b-instruct", "context_length": 2048,
                            "flash_attention": True, "echo_load_config": True}]
    assert ollama_client.generate(model="brief").done_reason == "load"
    assert len(loads(fake)) == 1 and fake.requests("/v1/chat/completions") == []
    ollama_client.chat(model="brief", messages=HI, stream=False)
    # LM Studio's load takes no TTL: the proxy unloads the instance after the alias's 1 s idle
    deadline = time.monotonic() + 10
    while not fake.requests("/api/v1/models/unload"):
        assert time.monotonic() < deadline, "the idle instance was never unloaded"
        time.sleep(0.1)
    assert fake.requests("/api/v1/models/unload")[0]["json"] == {"instance_id": "qwen2-vl-2b-instruct"}


def test_aliases_without_load_settings_keep_jit(server, fake, clients):
    ollama_client, _ = clients
    ollama_client.chat(model="plain", messages=HI, stream=False)
    assert loads(fake) == [] and chat_models(fake) == [MODEL]
    assert fake.requests("/v1/chat/completions")[0]["json"]["ttl"] == 600


def test_manage_check_says_load_settings_apply_on_an_lmstudio_with_api_v1(server):
    import subprocess
    import sys

    from tests.conftest import ROOT

    checked = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--tag", "lmstudio"], cwd=ROOT,
                             env=server.env, capture_output=True, text=True)
    assert checked.returncode == 0 and "routing.W002" not in checked.stdout + checked.stderr
    assert "System check identified no issues" in checked.stdout


@pytest.mark.browser
def test_the_admin_edits_load_settings_and_the_history_shows_the_load(server, fake, clients, page):
    admin_login(page, server, *make_superuser(server))
    page.goto(f"{server.url}/admin/routing/alias/add/")
    page.fill("#id_name", "agent")
    page.fill("#id_model", MODEL)
    page.fill("#id_context_length", "0")
    page.click("input[name=_save]")
    assert "'context_length' must be a positive whole number" in \
        page.locator(".field-context_length .errorlist").inner_text()
    page.fill("#id_context_length", "32768")
    page.select_option("#id_flash_attention", "true")
    page.click("input[name=_save]")
    page.wait_for_url(f"{server.url}/admin/routing/alias/")

    ollama_client, _ = clients
    ollama_client.chat(model="agent", messages=HI, stream=False)
    assert loads(fake) == [{"model": MODEL, "context_length": 32768, "flash_attention": True,
                            "echo_load_config": True}]
    page.goto(f"{server.url}/admin/routing/alias/")
    page.click("#result_list a:text('agent')")
    page.fill("#id_context_length", "16384")
    page.click("input[name=_save]")
    page.wait_for_url(f"{server.url}/admin/routing/alias/")
    request_id = httpx.post(f"{server.url}/api/chat", json={"model": "agent", "messages": HI,
                                                            "stream": False}, timeout=30).headers["X-Request-Id"]
    assert [load["context_length"] for load in loads(fake)] == [32768, 16384]
    assert chat_models(fake)[-1] == f"{MODEL}:2"

    find_log(server, request_id)
    page.goto(f"{server.url}/history/{request_id}/")
    shown = page.locator("dd.model-load").inner_text()
    assert "caused by this request" in shown and "context_length: 16384" in shown
    assert f"instance {MODEL}:2" in shown and "(the model load included)" in page.locator(
        "dt:text('First token') + dd").inner_text()
