"""End to end: the route table changes under a running server (routes.yaml edits, a broken file, the
admin form in a real Chromium) and the very next client request is routed by the new table."""
import re
import time

import httpx
import pytest

from tests.conftest import E2E_ROUTES, admin_login, make_superuser, start_proxy, stop

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def server(fake_lmstudio, tmp_path_factory):
    """A server of our own: these tests rewrite its routes.yaml and store aliases in its database."""
    proc = start_proxy(tmp_path_factory.mktemp("aliases"), fake_lmstudio.url)
    yield proc
    stop(proc.proc)


@pytest.fixture
def routes(server):
    """The server's routes.yaml, restored after the test."""
    yield server.routes
    server.routes.write_text(E2E_ROUTES)


@pytest.fixture
def client(server):
    import ollama

    return ollama.Client(host=server.url, timeout=30)


def chat(client, model: str, fake) -> dict:
    """Chat through the proxy; returns the body that reached the fake LM Studio."""
    fake.reset()
    client.chat(model=model, messages=[{"role": "user", "content": "hi"}], stream=False)
    [sent] = [r["json"] for r in fake.requests("/v1/chat/completions")]
    return sent


def eventually(check, timeout: float = 15.0):
    """Poll `check` until it returns something true (the server looks at routes.yaml every 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.2)


def submit_alias_form(page, **fields):
    """Fill the admin's alias form (`#id_<field>`) and press Save."""
    for field, value in fields.items():
        page.fill(f"#id_{field}", value)
    page.click("input[name=_save]")


def admin_session(server) -> httpx.Client:
    user, password = make_superuser(server)
    session = httpx.Client(base_url=server.url, timeout=10)
    session.get("/admin/login/")
    session.post("/admin/login/", data={"username": user, "password": password,
                                        "csrfmiddlewaretoken": session.cookies["csrftoken"],
                                        "next": "/admin/"}, headers={"Referer": f"{server.url}/admin/"})
    return session


def test_an_edited_routes_file_routes_the_next_request(server, routes, client, fake):
    assert eventually(lambda: chat(client, "coder", fake)["model"] == "qwen2.5-7b-instruct")
    routes.write_text(E2E_ROUTES.replace("model: qwen2.5-7b-instruct", "model: qwen3-4b-thinking")
                      + "  brand-new: llama-3.2-1b-instruct\n")
    assert eventually(lambda: chat(client, "coder", fake)["model"] == "qwen3-4b-thinking")
    sent = chat(client, "coder", fake)
    assert sent["temperature"] == 0.2 and sent["ttl"] == 1800  # the rest of the alias kept
    assert chat(client, "brand-new", fake)["model"] == "llama-3.2-1b-instruct"
    assert "brand-new:latest" in [m.model for m in client.list().models]


def test_a_broken_routes_file_keeps_the_last_good_table_and_the_admin_says_why(server, routes,
                                                                                client, fake):
    # The good table in force first (an earlier test's restore of the file may not be seen yet).
    assert eventually(lambda: chat(client, "coder", fake)["model"] == "qwen2.5-7b-instruct")
    routes.write_text(E2E_ROUTES + "  broken:\n    model: x\n    temprature: 2\n")
    session = admin_session(server)
    banner = eventually(lambda: re.search(r'id="routes-error">(.*?)</li>',
                                          session.get("/admin/routing/alias/").text, re.S))
    assert banner and "alias &#x27;broken&#x27;: unknown key &#x27;temprature&#x27;" in banner.group(1)
    assert "keeps serving the last good route table" in banner.group(1)
    sent = chat(client, "coder", fake)  # still served, by the last good table
    assert (sent["model"], sent["temperature"]) == ("qwen2.5-7b-instruct", 0.2)
    assert client.show("tiny").modelfile.count("llama-3.2-1b-instruct") == 1
    routes.write_text(E2E_ROUTES.replace("tiny: llama-3.2-1b-instruct", "tiny: qwen3-4b-thinking"))
    assert eventually(lambda: chat(client, "tiny", fake)["model"] == "qwen3-4b-thinking")
    assert eventually(lambda: 'id="routes-error"' not in session.get("/admin/routing/alias/").text)


@pytest.mark.browser
def test_an_alias_created_and_edited_in_the_admin_serves_the_next_request(server, client, fake, page):
    user, password = make_superuser(server)
    admin_login(page, server, user, password)
    page.goto(f"{server.url}/admin/routing/alias/add/")
    assert page.locator("#model-lmstudio-models option[value='qwen3-4b-thinking']").count() == 1
    submit_alias_form(page, name="browser-made:latest", model="llama-3.2-1b-instruct", ttl="2m",
                      temperature="0.7")
    page.wait_for_url(f"{server.url}/admin/routing/alias/")
    sent = chat(client, "browser-made", fake)
    assert (sent["model"], sent["temperature"], sent["ttl"]) == ("llama-3.2-1b-instruct", 0.7, 120)

    page.click("#result_list a:text-is('browser-made')")
    submit_alias_form(page, model="qwen2.5-7b-instruct", temperature="9")
    assert "between 0 and 2" in page.locator(".field-temperature .errorlist").inner_text()
    submit_alias_form(page, temperature="0.1", options='{"top_k": 5}')
    page.wait_for_url(f"{server.url}/admin/routing/alias/")
    sent = chat(client, "browser-made:latest", fake)
    assert (sent["model"], sent["temperature"], sent["top_k"]) == ("qwen2.5-7b-instruct", 0.1, 5)


@pytest.mark.browser
def test_a_file_alias_is_overridden_in_the_admin_then_tested_and_exported(server, client, fake, page):
    user, password = make_superuser(server)
    admin_login(page, server, user, password)
    page.goto(f"{server.url}/admin/routing/alias/")
    row = page.locator("#effective-aliases tr[data-alias='tiny']")
    assert row.locator(".source").inner_text() == "file"
    row.locator("a.override").click()
    assert page.input_value("#id_model") == "llama-3.2-1b-instruct"  # prefilled from routes.yaml
    submit_alias_form(page, temperature="1.5")
    page.wait_for_url(f"{server.url}/admin/routing/alias/")
    assert page.locator("#effective-aliases tr[data-alias='tiny'] .source").inner_text() == "admin override"
    sent = chat(client, "tiny", fake)
    assert (sent["model"], sent["temperature"]) == ("llama-3.2-1b-instruct", 1.5)

    fake.reset()
    page.locator("#effective-aliases tr[data-alias='tiny'] a:text-is('test')").click()
    assert page.locator("#test-answer").inner_text().startswith("Hello from llama-3.2-1b-instruct!")
    assert fake.requests("/v1/chat/completions")[0]["json"]["temperature"] == 1.5

    page.goto(f"{server.url}/admin/routing/alias/export/")
    assert "tiny:\n    model: llama-3.2-1b-instruct\n    temperature: 1.5" in \
        page.locator("#routes-yaml").inner_text()


def test_the_ollama_client_copies_and_deletes_aliases(server, client, fake):
    import ollama

    assert client.copy("coder", "coder-copy:latest").status == "success"
    sent = chat(client, "coder-copy", fake)
    assert (sent["model"], sent["temperature"], sent["ttl"]) == ("qwen2.5-7b-instruct", 0.2, 1800)
    assert "coder-copy:latest" in [m.model for m in client.list().models]
    assert client.delete("coder-copy").status == "success"
    assert "coder-copy:latest" not in [m.model for m in client.list().models]
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("coder")
    assert info.value.status_code == 409 and "routes.yaml" in info.value.error


def test_ollama_rm_of_an_lmstudio_model_unloads_it(server, client, fake):
    import ollama

    assert client.delete("qwen2.5-7b-instruct").status == "success"  # loaded in the fake
    unloads = fake.requests("/api/v1/models/unload")
    assert [r["json"]["instance_id"] for r in unloads] == ["qwen2.5-7b-instruct"]
    with pytest.raises(ollama.ResponseError) as info:
        client.delete("no-such-model")
    assert info.value.status_code == 404
