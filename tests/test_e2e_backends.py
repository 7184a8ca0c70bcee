"""Two LM Studio servers behind one alias, end to end: the proxy under Daphne in front of two fake
LM Studio processes. One is stopped mid-test (requests keep working through the other) and restarted
on its port (served again after the cool-off); least-busy spreads open streams over both."""
import contextlib
import time

import httpx
import pytest

from tests.conftest import free_port, start_fake_lmstudio, start_proxy, stop
from tests.test_e2e_history import find_log

pytestmark = pytest.mark.e2e

ROUTES = """
backends:
  first: {{url: "{first}"}}
  second: {{url: "{second}"}}
aliases:
  duo: {{model: qwen2.5-7b-instruct, backends: [first, second]}}
  spread: {{model: qwen2.5-7b-instruct, backends: [first, second], policy: least-busy}}
"""
CHAT = {"model": "duo", "messages": [{"role": "user", "content": "hi"}], "stream": False}


@pytest.fixture(scope="module")
def fakes():
    """Two fake LM Studio processes on fixed ports (so the first can be restarted where it was)."""
    port = free_port()
    holder = {"first": start_fake_lmstudio(port), "second": start_fake_lmstudio(), "port": port}
    yield holder
    stop(holder["first"].proc)
    stop(holder["second"].proc)


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    routes = ROUTES.format(first=fakes["first"].url, second=fakes["second"].url)
    proxy = start_proxy(tmp_path_factory.mktemp("backends"), fakes["second"].url, routes=routes,
                        BACKEND_COOL_OFF=1, UPSTREAM_CONNECT_TIMEOUT=2)
    yield proxy
    stop(proxy.proc)


def chats(fake) -> int:
    return len(fake.requests("/v1/chat/completions"))


def test_fallback_survives_a_stopped_backend_and_uses_it_again_after_it_returns(fakes, server):
    first, second = fakes["first"], fakes["second"]
    first.reset(), second.reset()
    assert httpx.post(f"{server.url}/api/chat", json=CHAT, timeout=30).status_code == 200
    assert (chats(first), chats(second)) == (1, 0)

    stop(first.proc)
    for _ in range(3):
        answer = httpx.post(f"{server.url}/api/chat", json=CHAT, timeout=30)
        assert answer.status_code == 200 and "Hello from qwen2.5-7b-instruct" in answer.json()["message"]["content"]
    assert chats(second) == 3
    assert find_log(server, answer.headers["X-Request-Id"])["backend"] == "second"
    ready = httpx.get(f"{server.url}/ready", timeout=30).json()
    assert ready["status"] == "ready" and ready["backends"]["first"]["up"] is False

    fakes["first"] = first = start_fake_lmstudio(fakes["port"])
    deadline = time.monotonic() + 15  # the cool-off is 1 s; bounded, not a sleep
    while chats(first) == 0 and time.monotonic() < deadline:
        assert httpx.post(f"{server.url}/api/chat", json=CHAT, timeout=30).status_code == 200
        time.sleep(0.2)
    assert chats(first) >= 1, "the restarted backend was never used again"
    served_by_second = chats(second)
    assert httpx.post(f"{server.url}/api/chat", json=CHAT, timeout=30).status_code == 200
    assert chats(second) == served_by_second  # first in fallback order again, and up


def test_least_busy_spreads_open_streams_over_both_backends(fakes, server):
    first, second = fakes["first"], fakes["second"]
    for fake in (first, second):
        fake.reset()
        fake.script(tokens=40, delay=0.5)  # streams that stay open while the others start
    body = {"model": "spread", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    readers = []  # kept: a dropped line iterator would close its connection
    with httpx.Client(timeout=30) as client, contextlib.ExitStack() as streams:
        for _ in range(4):
            response = streams.enter_context(client.stream("POST", f"{server.url}/api/chat", json=body))
            assert response.status_code == 200
            readers.append(response.iter_lines())
            next(readers[-1])  # the proxy relays it: this stream counts as open
        assert (chats(first), chats(second)) == (2, 2)
        assert first.stats()["open_streams"] == second.stats()["open_streams"] == 2
    for fake in (first, second):
        fake.reset()
