"""Load, bounded and on loopback: 100 concurrent streaming clients at ~20 tokens/s each, through the
real server to the fake LM Studio. Zero errors, every answer complete, nothing left open.
"""
import asyncio
import time

import httpx
import orjson
import pytest

from tests.conftest import db_query as query

pytestmark = [pytest.mark.e2e, pytest.mark.load]

CLIENTS = 100
TOKENS = 40               # 2 s per answer at 20 tokens/s
TOKEN_DELAY = 0.05
ENDPOINTS = ["/api/chat", "/v1/chat/completions"]   # half the clients each


def answer_tokens(path: str, body: bytes) -> tuple[int, bool]:
    """(content pieces received, whether the stream ended properly) for one streamed answer."""
    pieces, ended = 0, False
    for line in body.splitlines():
        if not line.strip():
            continue
        if path.startswith("/v1/"):
            if line == b"data: [DONE]":
                ended = True
                continue
            event = orjson.loads(line.removeprefix(b"data: "))
            assert "error" not in event, event
            pieces += sum(1 for c in event["choices"] if (c.get("delta") or {}).get("content"))
        else:
            event = orjson.loads(line)
            assert "error" not in event, event
            ended = ended or event["done"]
            pieces += 0 if event["done"] else bool(event["message"]["content"])
    return pieces, ended


async def one_client(client: httpx.AsyncClient, i: int) -> dict:
    path = ENDPOINTS[i % len(ENDPOINTS)]
    body = {"model": "coder", "stream": True, "messages": [{"role": "user", "content": f"client {i}"}]}
    async with client.stream("POST", path, json=body) as response:
        content = await response.aread()
    pieces, ended = answer_tokens(path, content)
    return {"path": path, "status": response.status_code, "tokens": pieces, "ended": ended,
            "request_id": response.headers.get("X-Request-Id")}


async def run_clients(url: str, addresses: int = 4) -> list[dict]:
    """CLIENTS streams from `addresses` loopback addresses: several machines' worth of clients, each
    within the proxy's per-client cap (MAX_CLIENT_REQUESTS, 64 by default)."""
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    clients = [httpx.AsyncClient(base_url=url, timeout=60, limits=limits,
                                 transport=httpx.AsyncHTTPTransport(local_address=f"127.0.0.{n + 1}", limits=limits))
               for n in range(addresses)]
    try:
        return await asyncio.gather(*(one_client(clients[i % addresses], i) for i in range(CLIENTS)))
    finally:
        for client in clients:
            await client.aclose()


def test_100_concurrent_streams_all_complete_without_errors(proxy_server, fake):
    fake.script(tokens=TOKENS, delay=TOKEN_DELAY)
    results = asyncio.run(run_clients(proxy_server.url))

    failures = [r for r in results if r["status"] != 200 or r["tokens"] != TOKENS or not r["ended"]]
    assert not failures, failures[:5]
    assert len({r["request_id"] for r in results}) == CLIENTS     # one exchange per request
    assert len(fake.requests("/v1/chat/completions")) == CLIENTS
    assert fake.stats() == {"open_streams": 0, "closed_by_client": 0}
    # Exactly one request-log row per request, each complete (the writer is asynchronous: bounded wait).
    ids = [r["request_id"] for r in results]
    rows = wait_for_rows(proxy_server, ids)
    assert sorted(row["request_id"] for row in rows) == sorted(ids)
    assert all(row["status"] == 200 and row["outcome"] == "ok" for row in rows)
    assert all(row["completion_tokens"] == TOKENS for row in rows)


def wait_for_rows(server, ids: list[str], timeout: float = 20.0) -> list[dict]:
    placeholders = ",".join("?" * len(ids))
    sql = f"SELECT request_id, status, outcome, completion_tokens FROM adminui_requestlog " \
          f"WHERE request_id IN ({placeholders})"
    deadline = time.monotonic() + timeout
    rows = query(server, sql, *ids)
    while len(rows) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.1)
        rows = query(server, sql, *ids)
    return rows
