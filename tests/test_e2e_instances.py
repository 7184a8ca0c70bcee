"""Several proxy instances on PostgreSQL and Redis, chosen by settings alone: two Daphne processes
share one database (DATABASE_URL=postgres://...) and one Channels layer (REDIS_URL). An alias stored
through one instance is served by the other on its next requests, and a request through one appears
live on the other's history page (the request log in PostgreSQL, the broadcast through Redis)."""
import time
import uuid

import httpx
import pytest

from tests.conftest import admin_login, make_superuser, two_instances

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def instances(fake_lmstudio, postgres_url, redis_url, tmp_path_factory):
    with two_instances(tmp_path_factory, fake_lmstudio.url, postgres_url, redis_url) as both:
        yield both


def test_an_alias_stored_through_one_instance_is_served_by_the_other(instances, fake):
    first, second = instances
    chat = {"model": "team-coder", "messages": [{"role": "user", "content": "hi"}], "stream": False}
    assert httpx.post(f"{second.url}/api/chat", json=chat, timeout=30).status_code == 404
    copied = httpx.post(f"{first.url}/api/copy", json={"source": "coder", "destination": "team-coder"},
                        timeout=30)
    assert copied.status_code == 200
    deadline = time.monotonic() + 5  # the cross-process refresh is at most ~1 s; bounded, not a sleep
    while (answer := httpx.post(f"{second.url}/api/chat", json=chat, timeout=30)).status_code == 404:
        assert time.monotonic() < deadline, "the other instance never saw the new alias"
        time.sleep(0.1)
    assert answer.status_code == 200
    sent = fake.requests("/v1/chat/completions")[-1]["json"]
    assert sent["model"] == "qwen2.5-7b-instruct" and sent["temperature"] == 0.2  # coder's route
    httpx.request("DELETE", f"{first.url}/api/delete", json={"model": "team-coder"}, timeout=30)


@pytest.mark.browser
def test_a_request_through_one_instance_appears_live_on_the_others_history_page(instances, fake, page):
    first, second = instances
    user, password = make_superuser(second)
    admin_login(page, second, user, password)
    page.goto(f"{second.url}/history/")
    page.wait_for_selector("#live-status[data-connected=yes]")

    prompt = f"across instances {uuid.uuid4().hex[:8]}"
    response = httpx.post(f"{first.url}/api/chat", timeout=30, json={
        "model": "coder", "stream": False, "messages": [{"role": "user", "content": prompt}]})
    assert response.status_code == 200
    request_id = response.headers["X-Request-Id"]
    row = page.locator(f"tr[data-request-id='{request_id}']")
    row.wait_for()  # written by the first instance, pushed through Redis to the second's WebSocket
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert "coder" in row.inner_text() and row.locator("td.backend").inner_text() == "default"
    # the history pages read PostgreSQL too
    assert page.goto(f"{second.url}/history/{request_id}/").status == 200
    assert prompt in page.locator(".conversation").inner_text()
    assert page.goto(f"{second.url}/history/overview/").status == 200
    assert page.goto(f"{second.url}/history/?alias=coder&q=across").status == 200
    assert page.locator(f"tr[data-request-id='{request_id}']").count() == 1
