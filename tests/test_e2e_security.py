"""The proxy as an attacker's web page, a forged cookie, a password guesser and a careless set-up would
try it, under Daphne: a page on another origin cannot drive the API, the secret key is the
installation's own, logins are throttled, the pages carry a Content-Security-Policy and stay live,
credentials never show, and a key-protected proxy can still list models for Copilot."""
from __future__ import annotations

import os
import re
import stat
import time

import httpx
import ollama
import pytest

from tests.conftest import admin_login, db_query, make_superuser, start_proxy, stop

pytestmark = pytest.mark.e2e

KEY = "security-key-0123456789"
PUBLIC_CONSTANT = "insecure-dev-key-change-me-for-anything-shared"  # the old default


# --- a web page on another origin --------------------------------------------------------------

EVIL_PAGE = """<!doctype html><title>evil</title><script>
async function attack(proxy) {
  const text = (body) => ({method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
                           body: JSON.stringify(body)});
  await fetch(proxy + "/api/copy", text({source: "tiny", destination: "coder"})).catch(() => {});
  await fetch(proxy + "/api/copy", text({source: "tiny", destination: "hijacked"})).catch(() => {});
  await fetch(proxy + "/api/chat", text({model: "coder", stream: false,
                                         messages: [{role: "user", content: "from evil"}]})).catch(() => {});
  return "sent";
}
</script>"""


@pytest.fixture(scope="module")
def page_server():
    """A web server on a loopback port serving EVIL_PAGE: the browser reaches it as http://evil.example
    (the host resolver maps the name to 127.0.0.1, so no network and no private-network rules)."""
    import http.server
    import threading

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = EVIL_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()


@pytest.fixture(scope="module")
def browser():
    """conftest's Chromium, resolving evil.example to this machine."""
    from playwright.sync_api import sync_playwright

    from tests.conftest import CHROMIUM_FLAGS, chromium_executable

    exe = chromium_executable()
    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=exe, headless=True,
                                      args=[*CHROMIUM_FLAGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"])
        yield instance
        instance.close()


@pytest.mark.browser
def test_a_page_on_another_origin_cannot_drive_the_api(page, proxy_server, fake, page_server):
    page.goto(f"http://evil.example:{page_server}/")
    assert page.evaluate(f"attack({proxy_server.url!r})") == "sent"
    page.wait_for_timeout(500)
    tags = {m["name"] for m in httpx.get(f"{proxy_server.url}/api/tags").json()["models"]}
    assert "hijacked:latest" not in tags and "hijacked" not in tags
    assert db_query(proxy_server, "SELECT name FROM routing_alias WHERE name IN ('coder', 'hijacked')") == []
    assert not [r for r in fake.requests("/v1/chat/completions") if "from evil" in str(r["body"])]


@pytest.mark.browser
def test_a_page_on_this_machine_may_call_the_api(page, proxy_server, page_server):
    """Ollama's default: a local web UI (http://127.0.0.1:<any port>) is served, and may read answers."""
    page.goto(f"http://127.0.0.1:{page_server}/")
    version = page.evaluate(f"fetch({proxy_server.url!r} + '/api/version').then(r => r.json())")
    assert version["version"]


# --- the secret key ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def own_key_proxy(fake_lmstudio, tmp_path_factory):
    """A proxy started as a fresh installation is: no SECRET_KEY in its environment."""
    tmp = tmp_path_factory.mktemp("ownkey")
    server = start_proxy(tmp, fake_lmstudio.url, SECRET_KEY="", SECRET_KEY_FILE=tmp / "secret_key")
    yield server, tmp / "secret_key"
    stop(server.proc)


def test_each_installation_makes_its_own_private_key(own_key_proxy):
    _, key_file = own_key_proxy
    key = key_file.read_text().strip()
    assert len(key) >= 50 and key != PUBLIC_CONSTANT
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_a_messages_cookie_signed_with_the_old_public_key_is_rejected(own_key_proxy):
    from django.contrib.messages.storage.base import Message
    from django.contrib.messages.storage.cookie import CookieStorage
    from django.test import RequestFactory, override_settings
    from django.utils.safestring import mark_safe

    server, _ = own_key_proxy
    with override_settings(SECRET_KEY=PUBLIC_CONSTANT):
        forged = CookieStorage(RequestFactory().get("/"))._encode(
            [Message(25, mark_safe('<b id="forged">planted</b>'))])
    page = httpx.get(f"{server.url}/admin/login/", cookies={"messages": forged})
    assert page.status_code == 200
    assert "forged" not in page.text and "planted" not in page.text


def test_settings_carry_no_key_of_their_own():
    from pathlib import Path

    settings_text = (Path(__file__).resolve().parent.parent / "shimsite" / "settings.py").read_text()
    assert PUBLIC_CONSTANT not in settings_text


# --- admin login throttling and the Content-Security-Policy -------------------------------------

def login_attempt(client: httpx.Client, url: str, username: str, password: str) -> httpx.Response:
    form = client.get(f"{url}/admin/login/")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text).group(1)
    return client.post(f"{url}/admin/login/?next=/admin/", data={
        "csrfmiddlewaretoken": token, "username": username, "password": password, "next": "/admin/"})


def test_password_guessing_locks_the_login_even_for_the_right_password(fake_lmstudio, tmp_path):
    server = start_proxy(tmp_path, fake_lmstudio.url, LOGIN_FAILURE_LIMIT=3)
    try:
        user, password = make_superuser(server, "guarded", "right-horse-42")
        with httpx.Client(headers={"Referer": server.url}) as client:
            statuses = [login_attempt(client, server.url, user, "wrong").status_code for _ in range(3)]
            assert statuses == [200, 200, 429]  # the form again, then locked
            locked = login_attempt(client, server.url, user, password)
            assert locked.status_code == 429
            assert "sessionid" not in client.cookies
    finally:
        stop(server.proc)


@pytest.mark.parametrize("path", ["/admin/login/", "/history/"])
def test_admin_and_history_pages_carry_a_content_security_policy(proxy_server, path):
    policy = httpx.get(proxy_server.url + path).headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "object-src 'none'" in policy


def test_api_answers_carry_no_page_policy(proxy_server):
    assert "content-security-policy" not in httpx.get(f"{proxy_server.url}/api/tags").headers


@pytest.mark.browser
def test_the_history_pages_work_under_the_policy(page, proxy_server, fake):
    violations = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    user, password = make_superuser(proxy_server)
    admin_login(page, proxy_server, user, password)
    page.goto(f"{proxy_server.url}/history/")
    page.wait_for_selector("#live-status[data-connected=yes]")  # history.js ran, the WebSocket is open
    response = httpx.post(f"{proxy_server.url}/api/chat", timeout=30, json={
        "model": "coder", "stream": False, "messages": [{"role": "user", "content": "csp check"}]})
    request_id = response.headers["X-Request-Id"]
    page.locator(f"tr[data-request-id='{request_id}']").wait_for()
    page.goto(f"{proxy_server.url}/history/{request_id}/")
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.click("#copy-curl")
    page.wait_for_function("document.getElementById('copy-curl').textContent === 'Copied'")
    page.goto(f"{proxy_server.url}/history/overview/")
    assert page.locator("svg.chart").is_visible()
    assert violations == []


# --- credentials ---------------------------------------------------------------------------------

def test_a_backend_url_with_credentials_and_a_key_works_and_nothing_shows_them(fake, tmp_path):
    host = fake.url.removeprefix("http://")
    server = start_proxy(tmp_path, f"http://lmuser:pa55-word-9@{host}", LMSTUDIO_API_KEY="lm-key-7777",
                         API_KEY=KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        client = ollama.Client(host=server.url, headers=auth)
        assert client.chat(model="coder", messages=[{"role": "user", "content": "hi"}]).message.content
        assert httpx.get(f"{server.url}/api/ps", headers=auth).status_code == 200
        ready = httpx.get(f"{server.url}/ready", headers=auth)
        assert ready.status_code == 200 and ready.json()["backends"]["default"]["url"] == f"http://***@{host}"
        assert httpx.get(f"{server.url}/ready").json() == {"status": "ready"}  # no key: the bare status
        sent = fake.requests("/v1/chat/completions")[-1]
        assert "lm-key-7777" in str(sent["headers"])
        for text in (ready.text, (tmp_path / "server.log").read_text()):
            assert "pa55-word-9" not in text and "lm-key-7777" not in text
    finally:
        stop(server.proc)


def test_an_unreachable_backend_with_credentials_is_reported_masked(tmp_path, fake_lmstudio):
    from tests.conftest import free_port

    server = start_proxy(tmp_path, f"http://lmuser:pa55-word-9@127.0.0.1:{free_port()}", API_KEY=KEY)
    auth = {"Authorization": f"Bearer {KEY}"}
    try:
        chat = httpx.post(f"{server.url}/api/chat", headers=auth, json={
            "model": "coder", "stream": False, "messages": [{"role": "user", "content": "hi"}]})
        ready = httpx.get(f"{server.url}/ready", headers=auth)
        assert chat.status_code == 502 and ready.status_code == 503
        for text in (chat.text, ready.text):
            assert "pa55-word-9" not in text and "lmuser" not in text and "***@127.0.0.1" in text
        deadline = time.monotonic() + 15  # the request log is written in the background
        while not (rows := db_query(server, "SELECT error FROM adminui_requestlog")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rows and all("pa55-word-9" not in row["error"] and "***@" in row["error"] for row in rows)
    finally:
        stop(server.proc)


# --- Copilot with a key --------------------------------------------------------------------------

def test_public_model_listing_lets_copilot_list_models_while_generation_needs_the_key(fake, tmp_path):
    server = start_proxy(tmp_path, fake.url, API_KEY=KEY, PUBLIC_MODEL_LISTING="true")
    try:
        keyless = ollama.Client(host=server.url)  # as Copilot's Ollama provider: no Authorization
        assert "coder:latest" in {m.model for m in keyless.list().models}
        assert keyless.show("coder").capabilities
        assert httpx.get(f"{server.url}/v1/models").status_code == 200
        assert httpx.get(f"{server.url}/api/version").status_code == 200
        with pytest.raises(ollama.ResponseError) as refused:
            keyless.chat(model="coder", messages=[{"role": "user", "content": "hi"}])
        assert refused.value.status_code == 401
        assert httpx.get(f"{server.url}/api/ps").status_code == 401
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        keyed = ollama.Client(host=server.url, headers={"Authorization": f"Bearer {KEY}"})
        assert keyed.chat(model="coder", messages=[{"role": "user", "content": "hi"}]).message.content
    finally:
        stop(server.proc)


def test_the_key_may_come_as_x_api_key(fake, tmp_path):
    server = start_proxy(tmp_path, fake.url, API_KEY=KEY)
    try:
        assert httpx.get(f"{server.url}/v1/models", headers={"x-api-key": KEY}).status_code == 200
        assert httpx.get(f"{server.url}/v1/models", headers={"x-api-key": "wrong"}).status_code == 401
    finally:
        stop(server.proc)
