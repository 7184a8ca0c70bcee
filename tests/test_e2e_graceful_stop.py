"""A graceful stop under Daphne and under `manage.py runserver --noreload` (./serve): on SIGTERM or SIGINT
the server stops accepting connections, lets the streams in flight finish (or, past SHUTDOWN_GRACE, ends
them with the dialect's error event), writes a history row for every request that got an answer, and
exits 0."""
import signal
import subprocess
import threading
import time

import httpx
import pytest

from tests.api_endpoints import DIALECT_CHATS, STREAM_ENDS
from tests.conftest import db_query, make_key, start_proxy, wait_for_key

pytestmark = pytest.mark.e2e

BODIES, ENDS = DIALECT_CHATS, STREAM_ENDS


def stream_all(server, count: int) -> tuple[list, threading.Thread]:
    """`count` streams in all four dialects at once, in threads; (path, status, body) as each ends."""
    results, paths = [], list(BODIES)

    def one(path):
        try:
            with httpx.stream("POST", f"{server.url}{path}", json=BODIES[path], timeout=60) as response:
                results.append((path, response.status_code, response.read()))
        except httpx.HTTPError as exc:
            results.append((path, None, repr(exc).encode()))

    threads = [threading.Thread(target=one, args=(paths[n % len(paths)],)) for n in range(count)]
    for thread in threads:
        thread.start()
    waiter = threading.Thread(target=lambda: [thread.join() for thread in threads])
    waiter.start()
    return results, waiter


def wait_for_streams(fake, count: int, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while fake.stats()["open_streams"] < count:
        assert time.monotonic() < deadline, f"only {fake.stats()['open_streams']} of {count} streams opened"
        time.sleep(0.05)


def refused(server) -> bool:
    try:
        httpx.get(f"{server.url}/health", timeout=2)
    except httpx.ConnectError:
        return True
    return False


@pytest.mark.parametrize("signal_number, runserver", [(signal.SIGTERM, False), (signal.SIGINT, False),
                                                      (signal.SIGTERM, True)])
def test_a_stop_lets_fifty_streams_finish_and_each_has_its_row(fake, tmp_path, signal_number, runserver):
    server = start_proxy(tmp_path, fake.url, runserver=runserver, SHUTDOWN_GRACE=20)
    fake.script(tokens=20, delay=0.1)  # each stream takes about 2 s
    results, waiter = stream_all(server, 50)
    wait_for_streams(fake, 50)
    server.proc.send_signal(signal_number)
    time.sleep(0.5)
    assert refused(server)  # no new connections, while the fifty go on
    assert server.proc.wait(30) == 0
    waiter.join(10)
    assert len(results) == 50
    assert all(status == 200 and ENDS[path] in body
               for path, status, body in results), [r for r in results if ENDS[r[0]] not in r[2]][:2]
    rows = db_query(server, "SELECT endpoint, status FROM adminui_requestlog")
    assert len(rows) == 50 and {row["status"] for row in rows} == {200}
    log = (tmp_path / "server.log").read_text()
    assert "stopping; no new connections, 50 requests in flight" in log
    assert "failed" not in log and "Unclosed" not in log  # every client closed cleanly


def test_a_stop_closes_the_redis_client_of_the_key_limits_cleanly(fake, tmp_path, redis_url):
    server = start_proxy(tmp_path, fake.url, REDIS_URL=redis_url)
    key = make_key(server, "limited", "--requests-per-minute", "100")
    wait_for_key(server, key)
    answer = httpx.post(f"{server.url}/api/chat", headers={"Authorization": f"Bearer {key}"}, timeout=30,
                        json={"model": "coder", "messages": [], "stream": False})
    assert answer.status_code == 200  # counted in Redis: its client is open
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    log = (tmp_path / "server.log").read_text()
    assert "closing the connections to LM Studio" in log
    assert "failed" not in log and "Unclosed" not in log and "Traceback" not in log, log[-2000:]


def test_streams_longer_than_the_grace_end_with_the_dialects_error_event(fake, tmp_path):
    server = start_proxy(tmp_path, fake.url, SHUTDOWN_GRACE=1)
    fake.script(tokens=400, delay=0.05)  # 20 s each: longer than the grace
    results, waiter = stream_all(server, 8)
    wait_for_streams(fake, 8)
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    assert server.proc.wait(30) == 0
    assert time.monotonic() - started < 6  # the grace, then at most END_WAIT for the error events
    waiter.join(10)
    assert len(results) == 8
    for path, status, body in results:
        assert status == 200 and b"the proxy is stopping" in body and ENDS[path] not in body, (path, body[-300:])
    rows = db_query(server, "SELECT status, error FROM adminui_requestlog")
    assert len(rows) == 8 and all(row["status"] == 503 and "stopping" in row["error"] for row in rows)


def test_a_second_signal_stops_at_once(fake, tmp_path):
    server = start_proxy(tmp_path, fake.url, SHUTDOWN_GRACE=30)
    fake.script(tokens=400, delay=0.05)
    results, waiter = stream_all(server, 2)
    wait_for_streams(fake, 2)
    server.proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    try:
        assert server.proc.wait(10) == 0
    except subprocess.TimeoutExpired:
        server.proc.kill()
        raise
    waiter.join(20)
