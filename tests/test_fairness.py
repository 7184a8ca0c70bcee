"""Fair use of LM Studio: the upstream slots, the per-client cap, and what a client sees when the proxy
is at its limit (a 503 that says so, not "cannot reach LM Studio")."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest

from routing.core.errors import TooManyRequests, UpstreamBusy
from routing.lmstudio.admission import Admission
from routing.lmstudio.client import Upstream
from tests.conftest import start_proxy, stop

CHAT = {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.anyio
async def test_one_client_gets_at_most_its_share_and_others_still_get_in():
    admission = Admission(slots=4, per_client=2, wait=0.05)
    held = [await admission.enter("10.0.0.1"), await admission.enter("10.0.0.1")]
    with pytest.raises(TooManyRequests, match="MAX_CLIENT_REQUESTS"):
        await admission.enter("10.0.0.1")
    other = await admission.enter("10.0.0.2")
    held[0]()
    held[0]()  # giving a slot back twice frees it once
    again = await admission.enter("10.0.0.1")
    for release in (held[1], other, again):
        release()
    assert admission.by_client == {} and not admission.busy


@pytest.mark.anyio
async def test_when_every_slot_is_taken_a_request_waits_then_is_told_the_proxy_is_busy(settings):
    admission = Admission(slots=2, per_client=2, wait=0.05)
    held = [await admission.enter("a"), await admission.enter("b")]
    assert admission.busy
    with pytest.raises(UpstreamBusy, match="concurrency limit"):
        await admission.enter("c")
    assert admission.by_client == {"a": 1, "b": 1}  # the refused request holds nothing
    for release in held:
        release()
    assert not admission.busy


@pytest.mark.anyio
async def test_a_slot_freed_during_the_wait_is_taken():
    admission = Admission(slots=1, per_client=1, wait=5)
    first = await admission.enter("a")
    asyncio.get_running_loop().call_later(0.05, first)
    release = await admission.enter("b")
    release()


@pytest.mark.anyio
async def test_a_full_connection_pool_is_reported_as_busy_not_unreachable():
    class FullPool(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request):
            raise httpx.PoolTimeout("no connection available")

    upstream = Upstream("http://lm:secret-pw@lmstudio.test", transport=FullPool())
    with pytest.raises(UpstreamBusy) as busy:
        await upstream.open("POST", "/v1/chat/completions", {"model": "m"})
    assert "concurrency limit" in busy.value.message and "cannot reach" not in busy.value.message
    assert "secret-pw" not in busy.value.message


# --- under Daphne, with clients on different loopback addresses ---------------------------------


def client_from(address: str, timeout: float = 30) -> httpx.Client:
    return httpx.Client(transport=httpx.HTTPTransport(local_address=address), timeout=timeout)


def hold_stream(url: str, address: str, started: threading.Event, done: list):
    with client_from(address) as client, client.stream("POST", f"{url}/api/chat", json=CHAT) as response:
        done.append(response.status_code)
        started.set()
        for _ in response.iter_lines():
            pass


@pytest.mark.e2e
def test_a_client_holding_its_cap_does_not_starve_another(fake, tmp_path):
    fake.script(tokens=30, delay=0.1)  # each answer streams for about 3 s
    server = start_proxy(tmp_path, fake.url, UPSTREAM_MAX_CONNECTIONS=3, MAX_CLIENT_REQUESTS=2,
                         UPSTREAM_POOL_TIMEOUT=1)
    threads, statuses = [], []
    try:
        for address in ("127.0.0.2", "127.0.0.2"):  # client A takes its two slots
            started = threading.Event()
            threads.append(threading.Thread(target=hold_stream, args=(server.url, address, started, statuses)))
            threads[-1].start()
            assert started.wait(10)
        with client_from("127.0.0.2") as a:
            over = a.post(f"{server.url}/api/chat", json={**CHAT, "stream": False})
        assert over.status_code == 429 and "MAX_CLIENT_REQUESTS" in over.json()["error"]

        with client_from("127.0.0.3") as b:  # client B is served at once
            start = time.perf_counter()
            with b.stream("POST", f"{server.url}/api/chat", json=CHAT) as response:
                assert response.status_code == 200
                next(response.iter_lines())
                first_line = time.perf_counter() - start
        print(f"\nclient B's time to first line while client A holds its cap: {first_line * 1000:.0f} ms")

        started = threading.Event()  # client C takes the last slot: now every slot is taken
        threads.append(threading.Thread(target=hold_stream, args=(server.url, "127.0.0.4", started, statuses)))
        threads[-1].start()
        assert started.wait(10)
        with client_from("127.0.0.3") as b:
            busy = b.post(f"{server.url}/api/chat", json={**CHAT, "stream": False})
            ready = b.get(f"{server.url}/ready")
        assert busy.status_code == 503
        assert "concurrency limit" in busy.json()["error"] and "cannot reach" not in busy.json()["error"]
        assert ready.status_code == 503 and ready.json()["status"] == "busy"
    finally:
        for thread in threads:
            thread.join(20)
        stop(server.proc)
    assert statuses == [200, 200, 200]
