"""PostgreSQL restarted under load: the proxy keeps answering (the route table in force stays in force), the
log rows of the requests answered meanwhile wait in the writer's queue and are all written once the
database is back, in the same process, and the admin says the database is away instead of failing. A
cluster of this module's own is stopped (a fast shutdown: every connection cut) and started again on the
same port while clients of all four dialects keep sending."""
import threading
import time

import httpx
import psycopg
import pytest

from tests.api_endpoints import DIALECT_CHATS
from tests.conftest import PostgresCluster, make_superuser, start_proxy, stop
from tests.test_ops import sample

pytestmark = pytest.mark.e2e

BODIES = {**DIALECT_CHATS, "/api/chat": {**DIALECT_CHATS["/api/chat"], "stream": False}}  # one whole answer too
LOAD_SECONDS, DOWN_AT, DOWN_FOR = 30.0, 8.0, 5.0


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


def test_a_database_restart_under_load_loses_no_row_and_needs_no_proxy_restart(cluster, server):
    answered, other, stop_load = [], [], threading.Event()

    def load():
        with httpx.Client(timeout=30) as client:
            while not stop_load.is_set():
                for path in BODIES:
                    response = send(client, server, path)
                    (answered if response.status_code == 200 else other).append(
                        (time.monotonic(), path, response.headers.get("x-request-id")))

    admin = httpx.Client(base_url=server.url, timeout=30)
    username, password = make_superuser(server)
    admin.get("/admin/login/")
    admin.post("/admin/login/", data={"username": username, "password": password,
                                      "csrfmiddlewaretoken": admin.cookies["csrftoken"]})
    assert admin.get("/admin/").status_code == 200

    worker = threading.Thread(target=load)
    started = time.monotonic()
    worker.start()
    try:
        time.sleep(DOWN_AT)
        cluster.stop()
        down, down_at = len(answered), time.monotonic()
        time.sleep(1)
        page = admin.get("/admin/")
        ready = httpx.get(f"{server.url}/ready", timeout=10).json()
        queued = sample(httpx.get(f"{server.url}/metrics").text, "requestlog_queue_depth")
        time.sleep(DOWN_FOR - 1)
        cluster.start()
        up_at = time.monotonic()
        waited = [request_id for _, _, request_id in answered]  # answered before it came back
        while len(logged(cluster, waited)) < len(waited) and time.monotonic() - up_at < 20:
            time.sleep(0.25)
        recovered = time.monotonic() - up_at  # until the rows that waited are all in
        time.sleep(max(0.0, LOAD_SECONDS - (time.monotonic() - started)))
    finally:
        stop_load.set()
        worker.join(30)

    assert not other, other[:5]  # no 5xx: the database is not the API's business
    assert {path for at, path, _ in answered if down_at <= at < up_at} == set(BODIES)  # all, through it
    assert len(answered) - down > 50
    assert page.status_code == 503 and "database is unavailable" in page.text.lower()
    assert ready["status"] == "ready" and ready["request_log"]["database"].startswith("unavailable")
    assert queued > 0  # the rows answered meanwhile wait
    ids = [request_id for _, _, request_id in answered]
    deadline = time.monotonic() + 30
    while len(logged(cluster, ids)) < len(ids) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert logged(cluster, ids) == set(ids), f"{len(ids) - len(logged(cluster, ids))} of {len(ids)} rows lost"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert sample(metrics, "requestlog_rows_dropped_total") == 0
    assert sample(metrics, "requestlog_queue_depth") == 0
    assert admin.get("/admin/").status_code == 200  # the admin works again
    assert server.proc.poll() is None  # the same process throughout
    print(f"\nPostgreSQL restart: {len(answered)} answered ({len(answered) - down} after the stop), "
          f"{len(ids)} rows expected and written, 0 dropped; the rows that waited were in {recovered:.1f} s "
          f"after PostgreSQL was back")
