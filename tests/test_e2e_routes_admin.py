"""End to end in a real Chromium: a pattern alias, a declared endpoint and the `expose` default made in
the admin are live on the running server's next request."""
import httpx
import ollama
import pytest

from tests.conftest import admin_login, make_superuser, start_proxy, stop

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def server(fake_lmstudio, tmp_path_factory):
    """A server of our own: these tests store rows in its database."""
    proc = start_proxy(tmp_path_factory.mktemp("routes-admin"), fake_lmstudio.url)
    yield proc
    stop(proc.proc)


@pytest.fixture
def admin_page(server, page):
    admin_login(page, server, *make_superuser(server))
    return page


def save(page, changelist: str):
    page.click("input[name=_save]")
    page.wait_for_url(changelist)


def tag_names(server) -> list[str]:
    return [m.model for m in ollama.Client(host=server.url, timeout=30).list().models]


def test_a_pattern_alias_made_in_the_admin_serves_a_hard_coded_name(server, admin_page, fake):
    page = admin_page
    page.goto(f"{server.url}/admin/routing/alias/add/")
    page.fill("#id_name", "llama3*")
    page.fill("#id_model", "qwen3-4b-thinking")
    page.fill("#id_temperature", "0.4")
    save(page, f"{server.url}/admin/routing/alias/")
    row = page.locator("#effective-aliases tr[data-alias='llama3*']")
    assert (row.locator(".kind").inner_text(), row.locator(".source").inner_text()) == ("pattern", "admin")

    reply = ollama.Client(host=server.url, timeout=30).chat(
        model="llama3:8b", messages=[{"role": "user", "content": "hi"}], stream=False)
    assert reply.model == "llama3:8b"
    [sent] = [r["json"] for r in fake.requests("/v1/chat/completions")]
    assert (sent["model"], sent["temperature"]) == ("qwen3-4b-thinking", 0.4)

    page.goto(f"{server.url}/admin/routing/alias/add/")  # a tie is refused, naming the other pattern
    page.fill("#id_name", "llama3?")
    page.fill("#id_model", "tiny")
    page.click("input[name=_save]")
    assert "patterns 'llama3*' (in the admin) and 'llama3?' are equally specific" in \
        page.locator(".field-name .errorlist").inner_text()


def test_a_declared_endpoint_made_in_the_admin_is_answered(server, admin_page):
    page = admin_page
    assert httpx.post(f"{server.url}/props").status_code == 404
    page.goto(f"{server.url}/admin/routing/declaredendpoint/add/")
    page.select_option("#id_method", "POST")
    page.fill("#id_path", "/api/tags")
    page.click("input[name=_save]")
    assert "would shadow the proxy's own API" in page.locator(".field-path .errorlist").inner_text()
    page.fill("#id_path", "/props")
    page.fill("#id_status", "201")
    page.fill("#id_body", '{"default_generation_settings": {"n_ctx": 4096}}')
    save(page, f"{server.url}/admin/routing/declaredendpoint/")
    row = page.locator("#effective-endpoints tr[data-endpoint='POST /props']")
    assert row.locator(".source").inner_text() == "admin"

    answer = httpx.post(f"{server.url}/props")
    assert (answer.status_code, answer.json()) == (201, {"default_generation_settings": {"n_ctx": 4096}})


def test_expose_aliases_set_in_the_admin_changes_the_model_list(server, admin_page):
    page = admin_page
    before = tag_names(server)
    assert "coder:latest" in before and "qwen2.5-7b-instruct:latest" in before  # LM Studio's too
    page.goto(f"{server.url}/admin/routing/routedefaults/")
    assert page.locator("#effective-defaults tr[data-default='expose'] .source").inner_text() == "file"
    page.select_option("#id_expose", "aliases")
    page.click("input[name=_save]")
    page.wait_for_selector(".messagelist .success")
    row = page.locator("#effective-defaults tr[data-default='expose']")
    assert (row.locator(".value").inner_text(), row.locator(".source").inner_text()) == ("aliases", "admin")

    after = tag_names(server)
    assert "coder:latest" in after and "qwen2.5-7b-instruct:latest" not in after
    assert not any("*" in name for name in after)  # patterns are never listed
    exported = httpx.Client(base_url=server.url, cookies={c["name"]: c["value"] for c in
                                                          page.context.cookies()})
    assert "expose: aliases" in exported.get("/admin/routing/alias/export/?download=1").text
