"""Run a logged request again from its detail page, on two aliases, and compare them live in Chromium."""
import time

import httpx
import pytest

from tests.conftest import admin_login, db_query, make_superuser, start_proxy, stop
from tests.test_e2e_history import find_log

pytestmark = [pytest.mark.e2e, pytest.mark.browser]


@pytest.fixture(scope="module")
def server(fake_lmstudio, tmp_path_factory):
    server = start_proxy(tmp_path_factory.mktemp("compare"), fake_lmstudio.url)
    yield server
    stop(server.proc)


@pytest.mark.parametrize("path, body", [
    ("/v1/messages", {"model": "tiny", "max_tokens": 4096, "stream": True,
                      "messages": [{"role": "user", "content": "compare me"}]}),
    ("/api/chat", {"model": "tiny", "stream": True, "messages": [{"role": "user", "content": "compare me"}]}),
])
def test_a_logged_request_runs_again_on_two_aliases_side_by_side_while_they_stream(server, fake, page, path,
                                                                                   body):
    response = httpx.post(f"{server.url}{path}", json=body, timeout=30, headers={"anthropic-version": "2023-06-01"})
    original = response.headers["X-Request-Id"]
    find_log(server, original)
    admin_login(page, server, *make_superuser(server))
    page.goto(f"{server.url}/history/{original}/")
    fake.reset()
    fake.script(tokens=40, delay=0.05)  # two seconds each: long enough to be seen streaming
    page.select_option("#run-again-aliases", ["coder", "tiny"])
    page.click("#run-again")
    page.wait_for_url(f"{server.url}/history/{original}/compare/**")
    columns = page.locator("section.run:not(.original)")
    assert columns.count() == 2
    # Both columns fill while the runs stream, before either has its figures.
    page.wait_for_function("""() => [...document.querySelectorAll('section.run:not(.original)')].every(
        s => s.dataset.state === 'running' && s.querySelector('.answer').textContent.length > 0)""")
    page.wait_for_selector("#compare-state[data-done=yes]", timeout=20_000)
    for index, alias in enumerate(("coder", "tiny")):
        column = columns.nth(index)
        assert column.locator("h2.alias").inner_text() == alias
        assert column.get_attribute("data-state") == "done"
        assert column.locator(".status").inner_text() == "200"
        assert "tok39" in column.locator(".answer").inner_text()
        assert column.locator(".ttft").inner_text().endswith("ms")
    assert page.locator("dd.best").count() >= 1  # the better figures are marked
    # At the fake: each run carried its alias's model and overrides (coder: temperature 0.2, its system prompt).
    sent = {r["json"]["model"]: r["json"] for r in fake.requests("/v1/chat/completions")}
    assert set(sent) == {"qwen2.5-7b-instruct", "llama-3.2-1b-instruct"}
    assert sent["qwen2.5-7b-instruct"]["temperature"] == 0.2
    assert sent["qwen2.5-7b-instruct"]["messages"][0] == {"role": "system", "content": "You are terse."}
    # Each run is a logged replay of the original, linked both ways.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(db_query(server, "SELECT 1 FROM adminui_requestlog WHERE replay_of = ?",
                                                       original)) < 2:
        time.sleep(0.1)
    replays = db_query(server, "SELECT request_id, alias, endpoint FROM adminui_requestlog WHERE replay_of = ?",
                       original)
    assert sorted(r["alias"] for r in replays) == ["coder", "tiny"] and {r["endpoint"] for r in replays} == {path}
    page.goto(f"{server.url}/history/{original}/")
    assert page.locator("dd.replays a").count() == 2
