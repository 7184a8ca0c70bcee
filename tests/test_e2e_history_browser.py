"""In a real headless Chromium: log in, watch a request appear live on the history page, open it."""
import uuid

import httpx
import pytest

from tests.conftest import admin_login, make_superuser

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


def test_a_new_request_appears_live_and_its_detail_shows_the_exchange(page, proxy_server, fake):
    user, password = make_superuser(proxy_server)
    admin_login(page, proxy_server, user, password)
    page.click("#user-tools a[href='/history/']")          # the admin's "View site" link
    page.wait_for_url(f"{proxy_server.url}/history/")
    page.wait_for_selector("#live-status[data-connected=yes]")

    prompt = f"browser check {uuid.uuid4().hex[:8]}"
    response = httpx.post(f"{proxy_server.url}/api/chat", timeout=30, json={
        "model": "coder", "stream": True, "messages": [{"role": "user", "content": prompt}]})
    request_id = response.headers["X-Request-Id"]

    row = page.locator(f"tr[data-request-id='{request_id}']")
    row.wait_for()                                          # pushed over the WebSocket, no reload
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert "coder" in row.inner_text() and "qwen2.5-7b-instruct" in row.inner_text()

    row.locator("td.model a").click()
    page.wait_for_url(f"{proxy_server.url}/history/{request_id}/")
    conversation = page.locator(".conversation").inner_text()
    assert prompt in conversation and "You are terse." in conversation
    assert f"Hello from qwen2.5-7b-instruct! You said: {prompt}" in conversation
    assert '"temperature": 0.2' in page.locator("details pre.json").first.inner_text()
    assert page.locator("#curl").inner_text().startswith(f"curl {proxy_server.url}/api/chat")
