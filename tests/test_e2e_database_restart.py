"""PostgreSQL restarted under load: the proxy keeps answering (the route table in force stays in force) and
the request log resumes on its own, without a process restart. A cluster of this module's own is stopped
(a fast shutdown: every connection cut) and started again on the same port while clients of all four
dialects keep sending."""
import threading
import time

import httpx
import psycopg
import pytest

from tests.conftest import PostgresCluster, start_proxy, stop

pytestmark = pytest.mark.e2e

BODIES = {
    "/api/chat": {"model": "coder", "messages": [{"role": "user", "content": "hi"}], "stream": False},
    "/v1/chat/completions": {"model": "coder", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    "/v1/messages": {"model": "coder", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}],
                     "stream": True},
    "/v1/responses": {"model": "coder", "input": "hi", "stream": True},
}


@pytest.fixture(scope="module")
def cluster():
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.remove()


@pytest.fixture(scope="module")
def server(cluster, fake_lmstudio, tmp_path_factory):
    server = start_proxy(tmp_path_factory.mktemp("pg-restart"), fake_lmstudio.url, DATABASE_URL=cluster.url)
    yield server
    stop(server.proc)


def logged(cluster: PostgresCluster, request_ids: list[str]) -> set[str]:
    with psycopg.connect(cluster.url.replace("postgres://", "postgresql://"), connect_timeout=5) as db:
        rows = db.execute("SELECT request_id FROM adminui_requestlog WHERE request_id = ANY(%s)",
                          (request_ids,)).fetchall()
    return {row[0] for row in rows}


def send(client: httpx.Client, server, path: str) -> httpx.Response:
    with client.stream("POST", f"{server.url}{path}", json=BODIES[path]) as response:
        response.read()
    return response


def test_the_proxy_answers_through_a_database_restart_and_the_log_resumes_without_a_restart(cluster, server):
    statuses, stop_load = [], threading.Event()

    def load():
        with httpx.Client(timeout=30) as client:
            while not stop_load.is_set():
                for path in BODIES:
                    statuses.append((path, send(client, server, path).status_code))

    with httpx.Client(timeout=30) as client:
        before = [send(client, server, path).headers["x-request-id"] for path in BODIES]
    worker = threading.Thread(target=load)
    worker.start()
    try:
        time.sleep(1.5)
        cluster.stop()
        down = len(statuses)
        time.sleep(4)
        answered_while_down = statuses[down:]
        cluster.start()
        time.sleep(1.5)
    finally:
        stop_load.set()
        worker.join(30)

    assert answered_while_down, "no request was sent while the database was down"
    assert {status for _, status in statuses} == {200}, [s for s in statuses if s[1] != 200][:5]
    assert {path for path, _ in answered_while_down} == set(BODIES)  # every dialect, through the outage
    with httpx.Client(timeout=30) as client:
        after = [send(client, server, path).headers["x-request-id"] for path in BODIES for _ in range(5)]
    deadline = time.monotonic() + 20
    while logged(cluster, after) != set(after) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert logged(cluster, after) == set(after), "the request log did not resume after the restart"
    assert logged(cluster, before) == set(before)
    assert server.proc.poll() is None  # the same process throughout
