"""Fair use, measured: another client's time to first line while one client holds its cap.

    .venv/bin/python bench/fair_use.py

Starts the fake LM Studio (10-second streams) and the proxy with default settings under Daphne.
Client A (127.0.0.2) opens 80 streams (MAX_CLIENT_REQUESTS, 64 by default, are admitted, the rest are
a 429); client B (127.0.0.3) then makes 10 streamed chats, one after the other. Prints B's median time
to its first line, idle and while A holds its cap.
"""
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.conftest import start_fake_lmstudio, start_proxy, stop  # noqa: E402

CHAT = {"model": "coder", "messages": [{"role": "user", "content": "hi"}]}

async def first_line(client, url):
    t = time.perf_counter()
    async with client.stream("POST", f"{url}/api/chat", json=CHAT) as r:
        async for _ in r.aiter_lines():
            return r.status_code, time.perf_counter() - t

async def hold(client, url, statuses):
    async with client.stream("POST", f"{url}/api/chat", json=CHAT) as r:
        statuses.append(r.status_code)
        async for _ in r.aiter_lines():
            pass

async def main(url):
    b = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.3"), timeout=60)
    base = [(await first_line(b, url))[1] for _ in range(10)]
    limits = httpx.Limits(max_connections=200)
    a = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2", limits=limits),
                          timeout=60, limits=limits)
    statuses = []
    tasks = [asyncio.create_task(hold(a, url, statuses)) for _ in range(80)]
    while len(statuses) < 80:
        await asyncio.sleep(0.05)
    loaded = []
    for _ in range(10):
        status, t = await first_line(b, url)
        assert status == 200
        loaded.append(t)
    print(f"client A: {statuses.count(200)} streams admitted, {statuses.count(429)} refused 429")
    print(f"client B time to first line: idle median {statistics.median(base)*1000:.1f} ms; "
          f"while A holds its cap median {statistics.median(loaded)*1000:.1f} ms, max {max(loaded)*1000:.1f} ms")
    await asyncio.gather(*tasks)
    await a.aclose()
    await b.aclose()


def run():
    fake = start_fake_lmstudio()
    fake.script(tokens=100, delay=0.1)
    server = start_proxy(Path(tempfile.mkdtemp(prefix="fair-use-")), fake.url)
    try:
        asyncio.run(main(server.url))
    finally:
        stop(server.proc)
        stop(fake.proc)


if __name__ == "__main__":
    run()
